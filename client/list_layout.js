// How the message list reads, kept up to date as entries come and go: date and
// unread dividers (dividers.js), groups of one sender's messages (grouping.js)
// and the single "Sent" mark (sent_mark.js). The Room calls these hooks; each
// touches only the changed entry and its neighbour, so placing a message stays
// as cheap as finding its place.

import { Dividers } from "/dividers.js";
import { regroup } from "/grouping.js";
import { SentMark } from "/sent_mark.js";

export class ListLayout {
  /** `entries()` returns the Room's ordered list: confirmed by id, then pending. */
  constructor(entries) {
    this.entries = entries;
    this.dividers = new Dividers(entries, (entry) => regroup(entries(), entries().indexOf(entry)));
    this.sent = new SentMark(entries);
  }

  /** An entry was placed at `index`: it and the one after it have new neighbours. */
  placed(index) {
    this.refresh(index);
    this.refresh(index + 1);
  }

  /** Redo the dividers, then the group, of `entries[index]` (the group depends on the dividers). */
  refresh(index) {
    this.dividers.refresh(index);
    regroup(this.entries(), index);
  }

  refreshAll() {
    const count = this.entries().length;
    for (let i = 0; i < count; i++) this.refresh(i);
  }

  /** Entries left the list (already out of `entries`): their dividers and mark go, the rest is redone. */
  dropped(removed, { all = true } = {}) {
    for (const entry of removed) {
      this.dividers.dropped(entry);
      this.sent.dropped(entry);
    }
    if (all) this.refreshAll();
    else this.refresh(0);
  }

  /** A live entry is about to be placed (see Dividers.arrived). */
  arrived(entry) {
    this.dividers.arrived(entry);
  }

  /**
   * `entry` was marked pending or confirmed. A confirmed message may have moved
   * from among the pending ones (always last, at most MAX_PENDING of them), so
   * those get their neighbours redone.
   */
  marked(entry, el) {
    this.sent.marked(entry, el);
    if (entry.pending || !entry.el) return;
    const entries = this.entries();
    let first = entries.length;
    while (first > 0 && entries[first - 1].pending) first -= 1;
    for (let i = first; i < entries.length; i++) this.refresh(i);
  }
}
