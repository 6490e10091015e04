// Dividers in the message list: a date line ("Today", "Yesterday", a date) above
// the first message of each day, and a "New messages" line above the first
// message that arrived while this tab was hidden.
//
// A divider belongs to the message below it and always sits right before that
// message's element, so the list's order stays the messages' order and a
// divider moves, changes or leaves with its message.

import { h } from "/ui.js";

const UNREAD_SEEN_MS = 5000; // visible this long, the reader has seen where the new messages start
const MIDNIGHT_SLACK_MS = 1000; // relabel just after midnight, not a moment before it
const ABOVE_PX = 8; // room left above the unread divider when the list is brought back to it

const longDate = new Intl.DateTimeFormat(undefined, { dateStyle: "full" });

function dayStart(ms) {
  const date = new Date(ms);
  date.setHours(0, 0, 0, 0);
  return date.getTime();
}

function isoDay(ms) {
  const date = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

/** "Today", "Yesterday" or the local date of a day that starts at `start`. */
export function dayLabel(start, now = Date.now()) {
  const today = dayStart(now);
  if (start === today) return "Today";
  const yesterday = new Date(today);
  yesterday.setDate(yesterday.getDate() - 1);
  if (start === yesterday.getTime()) return "Yesterday";
  return longDate.format(new Date(start));
}

export class Dividers {
  /** `entries()` returns the Room's ordered list; `unreadGone(entry)` runs when the unread divider above `entry` goes. */
  constructor(entries, unreadGone = () => {}) {
    this.entries = entries;
    this.unreadGone = unreadGone;
    this.dated = new Set(); // entries that carry a date divider (at most MAX_RENDERED)
    this.unreadFrom = null; // the entry the "New messages" divider stands above
    this.unreadLine = h("li", { class: "divider unread-divider" }, h("span", {}, "New messages"));
    this.seenTimer = null;
    document.addEventListener("visibilitychange", () => this.visibilityChanged());
    this.scheduleRelabel();
  }

  /** Bring the dividers above `entries[index]` up to date with its neighbour before. */
  refresh(index) {
    const entries = this.entries();
    const entry = entries[index];
    if (!entry || !entry.el) return;
    const previous = entries[index - 1];
    const start = dayStart(entry.sentAt);
    if (!previous || dayStart(previous.sentAt) !== start) {
      if (!entry.dayLine) entry.dayLine = h("li", { class: "divider day-divider" }, h("time", {}, ""));
      const time = entry.dayLine.firstChild;
      time.dateTime = isoDay(start);
      time.textContent = dayLabel(start);
      entry.dayLine.dataset.day = String(start);
      this.dated.add(entry);
      // Above the system lines just before it too: they were written today, after
      // the messages of an earlier day ("Bob joined" reads under "Today").
      let anchor = entry.el;
      while (anchor.previousElementSibling?.classList.contains("system")) anchor = anchor.previousElementSibling;
      anchor.before(entry.dayLine);
    } else {
      this.dropDay(entry);
    }
    // The unread divider goes between the date and the message.
    if (entry === this.unreadFrom) entry.el.before(this.unreadLine);
  }

  /** `entry` left the list: its dividers leave with it. */
  dropped(entry) {
    this.dropDay(entry);
    if (entry === this.unreadFrom) this.seen();
  }

  dropDay(entry) {
    if (!entry.dayLine) return;
    entry.dayLine.remove();
    entry.dayLine = null;
    this.dated.delete(entry);
  }

  /**
   * A live message is about to be placed. The first one from someone else while
   * the tab is hidden gets the unread divider; our own means the reader is here.
   */
  arrived(entry) {
    if (entry.mine) {
      this.seen();
      return;
    }
    if (document.hidden && !this.unreadFrom) {
      clearTimeout(this.seenTimer);
      this.unreadFrom = entry;
    }
  }

  /** The reader has seen where the new messages start: the divider goes. */
  seen() {
    clearTimeout(this.seenTimer);
    const entry = this.unreadFrom;
    this.unreadFrom = null;
    this.unreadLine.remove();
    if (entry) this.unreadGone(entry); // nothing between it and the one before: it may join their group
  }

  visibilityChanged() {
    clearTimeout(this.seenTimer);
    // Hidden again before the reader looked: the divider stays where it is.
    if (document.hidden || !this.unreadFrom) return;
    this.showUnread();
    this.seenTimer = setTimeout(() => this.seen(), UNREAD_SEEN_MS);
  }

  /**
   * Back to the tab after more than a screen of new messages (the list followed
   * them to the end): scroll up so the first of them is in view, not missed.
   */
  showUnread() {
    const scroller = this.unreadLine.closest(".scroller");
    if (!scroller) return;
    const line = this.unreadLine.getBoundingClientRect();
    const view = scroller.getBoundingClientRect();
    if (line.top < view.top) scroller.scrollTop += line.top - view.top - ABOVE_PX;
  }

  /** "Today" becomes "Yesterday" at midnight, while the page stays open. */
  scheduleRelabel() {
    const now = Date.now();
    const tomorrow = new Date(dayStart(now));
    tomorrow.setDate(tomorrow.getDate() + 1);
    setTimeout(() => {
      for (const entry of this.dated) {
        entry.dayLine.firstChild.textContent = dayLabel(Number(entry.dayLine.dataset.day));
      }
      this.scheduleRelabel();
    }, tomorrow.getTime() - now + MIDNIGHT_SLACK_MS);
  }
}
