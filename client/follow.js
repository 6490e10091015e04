// Following the conversation: new messages scroll into view only for a reader
// who was at the bottom before they arrived; one who scrolled up to read gets a
// "New messages ↓" button instead of a jump.

import { h } from "/ui.js";

const AT_END_PX = 80; // this close to the bottom counts as "at the bottom"

export class Follower {
  constructor(scroller) {
    this.scroller = scroller;
    this.button = h("button", { type: "button", class: "button new-messages", onclick: () => this.jump() }, "New messages ↓");
    this.button.hidden = true;
    scroller.addEventListener("scroll", () => {
      if (this.atEnd()) this.button.hidden = true;
    });
  }

  atEnd() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < AT_END_PX;
  }

  /**
   * Add something to the list: `change` inserts it. Measured before the change,
   * so a long message cannot push the bottom out of reach of the check.
   * `force` (our own message, a fresh history) always scrolls.
   */
  around(change, { force = false, quiet = false } = {}) {
    const following = force || this.atEnd();
    change();
    if (following) this.toEnd();
    else if (!quiet) this.button.hidden = false;
  }

  toEnd() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this.button.hidden = true;
  }

  jump() {
    this.toEnd();
    this.scroller.focus();
  }
}
