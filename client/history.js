// The top of the message list: whether the server's history reaches back to the
// room's first message, and a notice at the top when it does not and nothing
// this browser kept (client/cache.js) covers what is missing.
//
// Message ids are the server's sequence numbers: 1, 2, 3, ... in each room, with
// no holes among stored messages, so "the oldest id is above 1" means older
// messages existed.

import { h } from "/ui.js";

/**
 * True when messages older than the server's `messages` (oldest first) are
 * missing from the page. `cap` is the most the server keeps (`history.cap`;
 * without it, the history's length); `shownIds` are the ids the page shows.
 * A server below its cap did not drop older messages for the cap: they were
 * cleared, so nothing is missing.
 */
export function olderMissing(messages, cap, shownIds) {
  if (!messages.length) return false;
  const oldest = messages[0].id;
  if (oldest <= 1 || messages.length < cap) return false;
  let covered = 0;
  for (const id of shownIds) if (id >= 1 && id < oldest) covered += 1;
  return covered < oldest - 1;
}

/** The notice: one element the Room puts first in the list or takes out. */
export class HistoryNotice {
  constructor(list) {
    this.list = list;
    this.el = h("li", { class: "history-gap", role: "note" });
  }

  show(cap) {
    const kept = cap === 1 ? "it keeps only the last message" : `it keeps the last ${cap}`;
    this.el.textContent = `Older messages are not kept on the server: ${kept}.`;
    if (this.list.firstChild !== this.el) this.list.prepend(this.el);
  }

  hide() {
    this.el.remove();
  }
}
