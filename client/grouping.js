// Consecutive messages from one sender read as one group: the name, id and time
// are shown on the group's first message only. A group is a run of neighbours
// in the list (nothing between them: no system line, no divider) from the same
// sender under the same name, each written within GROUP_WINDOW_MS of the one
// before. Whether a message continues a group depends only on the message just
// before it, so an insertion or a removal changes at most its neighbour's.

export const GROUP_WINDOW_MS = 5 * 60 * 1000; // a longer pause starts a new group, with its own name and time

/** True when `entry` reads as a continuation of `previous` (its list neighbour before). */
export function continues(previous, entry) {
  if (!previous || previous.unreadable || entry.unreadable) return false;
  if (previous.from !== entry.from || previous.mine !== entry.mine) return false;
  if ((previous.name || "") !== (entry.name || "")) return false;
  return Math.abs(entry.sentAt - previous.sentAt) <= GROUP_WINDOW_MS;
}

/** Mark `entries[index]` (if any) as a group's start or its continuation. */
export function regroup(entries, index) {
  const entry = entries[index];
  if (!entry || !entry.el) return;
  const previous = entries[index - 1];
  // Something drawn between them (a system line, a date or unread divider) ends the group.
  const adjacent = Boolean(previous) && entry.el.previousElementSibling === previous.el;
  entry.el.classList.toggle("continued", adjacent && continues(previous, entry));
}
