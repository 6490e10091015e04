// The people count is live only while connected. Otherwise it is the last count
// seen: its dot turns grey and its label says it may be out of date.

export function markPresence(people, count, connected) {
  people.dataset.stale = connected ? "false" : "true";
  const who = `${count} ${count === 1 ? "person" : "people"} in this room`;
  const label = connected ? who : `${who} when last connected (not connected now)`;
  people.querySelector("summary").setAttribute("aria-label", label);
  people.querySelector("summary").title = connected ? "" : "Not connected: the last count seen";
}
