// The people count is live only while connected. Otherwise it is the last count
// seen: its dot turns grey and its label says it may be out of date.

export function markPresence(people, count, connected) {
  people.dataset.stale = connected ? "false" : "true";
  // The label starts with the visible text ("2 here"; "2" on a phone), so that
  // a person who says what they see to their voice control hits this button.
  const seen = connected ? "" : " when last connected (not connected now)";
  const label = `${count} here${seen}: people in this room`;
  people.querySelector("summary").setAttribute("aria-label", label);
  people.querySelector("summary").title = connected ? "" : "Not connected: the last count seen";
}
