// The room page's elements: built once, then updated only by the Room (room.js).
//
// Every element is made with createElement and textContent (ui.js's h), so no
// string ever becomes HTML under the page's Trusted Types policy of none.

import { MAX_TEXT } from "/crypto.js";
import { Follower } from "/follow.js";
import { closePopover, keepFocus, managePopovers } from "/popovers.js";
import { PRIVACY_TITLE, privacyDialog } from "/privacy.js";
import { h, shortId } from "/ui.js";

/**
 * Build the room page for `roomId`. `actions` are the Room's handlers: copyInvite,
 * showInvite, changeName, notifications, clearHistory, forget, send (the composer's Enter and
 * Send) and typed
 * (each input). Returns the page's root element and the elements the Room updates:
 * statusLine, statusText, statusDetail, statusAction, people, peopleCount,
 * peopleList, menu, fingerprintCompact, fingerprintFull, firstHint, notice,
 * list, empty, scroller, follow, input, counter, sendButton and announcer.
 */
export function buildRoomView({ roomId, canCopy, actions }) {
  const statusText = h("span", { class: "status-text" }, "Connecting…");
  const statusDetail = h("span", { class: "status-detail" });
  const statusAction = h("span", { class: "status-action" });
  const statusLine = h(
    "p",
    { class: "status", "data-state": "connecting" },
    h("span", { class: "status-dot", "aria-hidden": "true" }),
    h("span", { role: "status" }, statusText),
    " ",
    statusDetail,
    statusAction,
  );
  // Filled with the room fingerprint once it is derived (fingerprint.js).
  const fingerprintCompact = h("p", { class: "fingerprint-slot" });
  const fingerprintFull = h("div", { class: "fingerprint-slot" });
  const peopleCount = h("span", { class: "count" }, "0");
  const peopleList = h("ul", { class: "people-list" });
  const people = h(
    "details",
    { class: "people" },
    h(
      "summary",
      { "aria-label": "0 here: people in this room" },
      h("span", { class: "people-icon", "aria-hidden": "true" }), // a dot drawn by CSS: no text
      " ",
      peopleCount,
      " ", // outside the span: axe reads each element's text trimmed, "2here"
      h("span", { class: "wide-only" }, "here"),
    ),
    h("div", { class: "popover" }, h("h2", {}, "In this room now"), peopleList, fingerprintFull),
  );
  const item = (label, onclick, extra = "") =>
    h("button", { type: "button", class: `menu-item${extra}`, onclick }, label);
  const menu = h(
    "details",
    { class: "menu" },
    h("summary", {}, "Menu"),
    h(
      "div",
      { class: "popover menu-items" },
      canCopy ? item("Copy invite link", actions.copyInvite) : null,
      canCopy ? item("Show invite QR", actions.showInvite) : null,
      item("Your name…", actions.changeName),
      item("Notifications…", actions.notifications),
      item("Clear history…", actions.clearHistory),
      item("Forget this room…", actions.forget, " danger"),
      item(PRIVACY_TITLE, () => {
        closePopover(menu);
        privacyDialog();
      }),
      h("a", { class: "menu-item", href: "/new_chat" }, "New room"),
    ),
  );
  managePopovers([people, menu]);
  const notice = h("p", { class: "notice", role: "status" });
  notice.hidden = true;
  const list = h("ol", { class: "messages", "aria-label": "Messages" });
  const empty = h(
    "li",
    { class: "empty" },
    "No messages yet. Everything you write here is encrypted in this page; the server only relays and briefly keeps the encrypted text.",
  );
  // Shown by the Room while nobody else is here, hidden by app.css once a message
  // is listed: a mistyped link opens an empty new room that looks like any other.
  const firstHint = h(
    "p",
    { class: "first-here" },
    "You are the first here. If you expected others, check that you opened the link you were sent.",
  );
  firstHint.hidden = true;
  list.append(empty);
  const scroller = h("div", { class: "scroller", tabindex: "0", "aria-label": "Conversation" }, list);
  const follow = new Follower(scroller);
  const input = h("textarea", {
    id: "composer-text",
    rows: "1",
    maxlength: MAX_TEXT,
    placeholder: "Write a message",
    "aria-describedby": "composer-help",
    autocomplete: "off",
    oninput: actions.typed,
    onkeydown: (event) => {
      // Enter sends; Shift+Enter (and Enter while composing with an IME) is a new line.
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        actions.send();
      }
    },
  });
  const counter = h("span", { class: "counter" });
  const sendButton = h("button", { type: "button", class: "button primary send", onclick: actions.send }, "Send");
  keepFocus(sendButton, input);
  const announcer = h("div", { class: "sr-only", "aria-live": "polite", "aria-atomic": "false" });
  const root = h(
    "div",
    { class: "room" },
    h(
      "header",
      { class: "room-header" },
      h(
        "div",
        { class: "room-title" },
        h("h1", {}, "Room ", h("span", { class: "cid room-id", title: `Room id ${roomId}` }, shortId(roomId))),
        fingerprintCompact,
        statusLine,
      ),
      people,
      menu,
    ),
    notice,
    firstHint,
    h("div", { class: "scroll-area" }, scroller, follow.button),
    h(
      "div",
      { class: "composer" },
      h("label", { for: "composer-text", class: "sr-only" }, "Message"),
      h("div", { class: "composer-row" }, input, sendButton),
      h("p", { id: "composer-help", class: "composer-help" }, h("span", {}, "Enter sends, Shift+Enter adds a line."), counter),
    ),
    announcer,
  );
  return {
    root,
    statusLine,
    statusText,
    statusDetail,
    statusAction,
    people,
    peopleCount,
    peopleList,
    menu,
    fingerprintCompact,
    fingerprintFull,
    firstHint,
    notice,
    list,
    empty,
    scroller,
    follow,
    input,
    counter,
    sendButton,
    announcer,
  };
}
