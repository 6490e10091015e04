// "Alice is typing…": the typing signal, sent and shown (docs/protocol.md).
//
// Sending costs the server a relayed ciphertext at most every TYPING_EVERY_MS
// while the person types a non-empty message, and nothing when it is turned off
// ("Tell others when I am typing", stored in the room record as typing: false).
//
// The indicator is a polite live region holding one element per person typing.
// A screen reader announces what is added, so each person is announced once
// when they start; renewals change nothing in the DOM and are not announced.

import { bdi } from "/bidi.js";
import { h } from "/ui.js";

export const TYPING_EVERY_MS = 3000; // at most one typing signal per 3 s (docs/protocol.md)
export const TYPING_SHOWN_MS = 6000; // a person is shown typing this long after their last signal
const MAX_TYPISTS = 10; // people shown typing at once; the room's own limit is the real bound

/** Decides when to send a typing signal; `send()` does the sending. */
export class TypingSender {
  constructor(send) {
    this.send = send;
    this.lastSent = 0;
  }

  /**
   * The composer changed: send if it holds text, it is on, and it is time. Never
   * more often, not even after a message: a signal takes a token from the same
   * rate-limit bucket as messages, and must never be why a message is refused.
   * `busy` (our messages still on their way) holds it back for the same reason.
   */
  typed(text, enabled, busy = false) {
    if (!enabled || busy || !text.trim()) return;
    const now = Date.now();
    if (now - this.lastSent < TYPING_EVERY_MS) return;
    this.lastSent = now;
    this.send();
  }

}

/** The "… is typing…" line. */
export class TypingIndicator {
  constructor() {
    this.el = h("p", { class: "typing", "aria-live": "polite", "aria-atomic": "false" });
    this.typists = new Map(); // clientId -> {el, timer}
  }

  /** `clientId` is typing; `label` is how they are named. */
  show(clientId, label) {
    const known = this.typists.get(clientId);
    if (known) {
      clearTimeout(known.timer);
      known.timer = setTimeout(() => this.stop(clientId), TYPING_SHOWN_MS);
      return;
    }
    if (this.typists.size >= MAX_TYPISTS) return;
    const el = h("span", { class: "typist" }, bdi(label), " is typing…");
    this.el.append(el);
    this.typists.set(clientId, { el, timer: setTimeout(() => this.stop(clientId), TYPING_SHOWN_MS) });
  }

  /** `clientId` sent their message, left, or went quiet. */
  stop(clientId) {
    const known = this.typists.get(clientId);
    if (!known) return;
    clearTimeout(known.timer);
    known.el.remove();
    this.typists.delete(clientId);
  }
}

/**
 * The menu's "Tell others when I am typing" switch. `isOn()` and `set(on)` read
 * and store the record's setting.
 */
export function typingToggle({ isOn, set }) {
  const button = h("button", {
    type: "button",
    class: "menu-item typing-toggle",
    "aria-pressed": String(isOn()),
    onclick: async () => {
      const on = !isOn();
      button.setAttribute("aria-pressed", String(on));
      await set(on);
    },
  });
  button.append(h("span", { class: "check", "aria-hidden": "true" }), "Tell others when I am typing");
  return button;
}
