// Our own messages on their way: "Queued" while the page is not connected,
// "Sending…" once sent, "Not delivered" (with Retry and Delete) when the server
// has not echoed one within ECHO_TIMEOUT_MS of sending it while connected. The
// echo is the server's only confirmation, so without a timeout a frame lost on
// the way would say "Sending…" forever.
//
// An entry's `delivery` is "queued", "sending" or "failed"; the Room (room.js)
// sends, and calls `sent`, `settled` and `disconnected` here.

import { h, replace } from "/ui.js";

export const ECHO_TIMEOUT_MS = 15_000; // connected and no echo after this: say so rather than wait forever

const MARKS = { queued: "Queued", sending: "Sending…", failed: "Not delivered" };

export class Deliveries {
  /** `onChange(entry)` redraws an entry's mark. */
  constructor({ onChange }) {
    this.onChange = onChange;
    this.timers = new Map(); // entry -> its echo timeout; at most MAX_PENDING (room.js)
  }

  /** The entry went out on an open connection: wait for its echo. */
  sent(entry) {
    clearTimeout(this.timers.get(entry));
    entry.delivery = "sending";
    this.timers.set(
      entry,
      setTimeout(() => {
        this.timers.delete(entry);
        if (!entry.pending) return;
        entry.delivery = "failed";
        this.onChange(entry);
      }, ECHO_TIMEOUT_MS),
    );
    this.onChange(entry);
  }

  /** The server echoed the entry, or the person deleted it. */
  settled(entry) {
    clearTimeout(this.timers.get(entry));
    this.timers.delete(entry);
  }

  /**
   * The connection is gone: what was on its way waits for the next one (which
   * sends every pending entry again). An entry already "Not delivered" keeps
   * saying so until then.
   */
  disconnected(entries) {
    for (const entry of entries) {
      if (!entry.pending || entry.delivery === "failed") continue;
      this.settled(entry);
      if (entry.delivery !== "queued") {
        entry.delivery = "queued";
        this.onChange(entry);
      }
    }
  }
}

/**
 * Draw a pending entry's mark in `markEl`: its state, and for one not delivered
 * the buttons `retry` (sends again with the same mid: receivers dedupe by mid)
 * and `remove`.
 */
export function drawDelivery(entry, el, markEl, { retry, remove }) {
  const state = entry.delivery || "sending";
  el.dataset.delivery = state;
  if (state !== "failed") {
    replace(markEl, MARKS[state]);
    return;
  }
  replace(
    markEl,
    MARKS.failed,
    h("button", { type: "button", class: "link-button delivery-action", onclick: retry }, "Retry"),
    h("button", { type: "button", class: "link-button delivery-action", onclick: remove }, "Delete"),
  );
}
