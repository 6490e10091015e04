// "Sent" is said once: on our newest confirmed message (class latest-sent), as
// chat apps do, rather than on every bubble. Messages still on their way keep
// showing their own state ("Sending…") whatever their place.

export class SentMark {
  /** `entries()` returns the Room's ordered list of shown messages. */
  constructor(entries) {
    this.entries = entries;
    this.latest = null; // our confirmed entry with the largest id, and its element
    this.latestEl = null;
  }

  /** `entry` (drawn as `el`) has just been marked pending or confirmed. */
  marked(entry, el) {
    if (!entry.mine) return;
    if (entry.pending) {
      el.classList.remove("latest-sent");
      if (entry === this.latest) this.findLatest();
      return;
    }
    if (this.latest && this.latest !== entry && this.latest.id > entry.id) {
      el.classList.remove("latest-sent");
      return;
    }
    this.set(entry, el);
  }

  /** `entry` left the list: if it carried the mark, the next newest takes it. */
  dropped(entry) {
    if (entry === this.latest) this.findLatest();
  }

  set(entry, el) {
    if (this.latestEl && this.latestEl !== el) this.latestEl.classList.remove("latest-sent");
    this.latest = entry;
    this.latestEl = el;
    if (el) el.classList.add("latest-sent");
  }

  findLatest() {
    // Rare (the newest one was cleared or left the page), so a scan is fine.
    const entries = this.entries();
    for (let i = entries.length - 1; i >= 0; i--) {
      const entry = entries[i];
      if (entry.mine && !entry.pending && entry !== this.latest && entry.el?.isConnected) {
        this.set(entry, entry.el);
        return;
      }
    }
    this.set(null, null);
  }
}
