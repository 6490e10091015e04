// "How your privacy is protected": the page's own security notes, in a dialog
// reachable from the new-chat card and the room's menu.
//
// It says plainly the one thing the page cannot do: the browser's global history
// keeps the full invite link, key included. location.replace and
// history.replaceState only clean this tab's session history (Back), not the list
// of visited pages, which "Forget this room" cannot touch and which goes wherever
// the browser syncs its history.

import { h } from "/ui.js";

export const PRIVACY_TITLE = "How your privacy is protected";

const PARAGRAPHS = [
  "Messages and names are encrypted in this page with the room's key before they leave it. The key is the part of the invite link after #: it never goes to the server, which only relays the encrypted text and keeps the last few messages for a while.",
  "Anyone who has the invite link can read and write in the room, so share it only with the people you are talking to.",
];

const HISTORY =
  "Your browser's history keeps the whole invite link, key included. This page removes the key from the address bar, but it cannot remove the link from the list of pages the browser remembers, and “Forget this room” does not remove it either. If the browser syncs its history to an account, the link goes there too.";

const WHAT_TO_DO = [
  "Open invite links in a private (incognito) window, which keeps no history.",
  "Delete the link from the browser's history (its History page: search for “room”).",
  "Turn off history sync in this browser's settings.",
];

/** Show the notes in a modal dialog. Escape or Close ends it; focus returns where it was. */
export function privacyDialog() {
  const previous = document.activeElement;
  const dialog = h(
    "dialog",
    { class: "dialog privacy", "aria-labelledby": "privacy-title" },
    h("h2", { id: "privacy-title" }, PRIVACY_TITLE),
    PARAGRAPHS.map((text) => h("p", {}, text)),
    h("h3", {}, "The link stays in your browser's history"),
    h("p", { id: "privacy-history" }, HISTORY),
    h("p", {}, "What you can do:"),
    h(
      "ul",
      {},
      WHAT_TO_DO.map((text) => h("li", {}, text)),
    ),
    h(
      "div",
      { class: "dialog-actions" },
      h("button", { type: "button", class: "button primary", autofocus: true, onclick: () => dialog.close() }, "Close"),
    ),
  );
  dialog.addEventListener("close", () => {
    dialog.remove();
    if (previous instanceof HTMLElement) previous.focus();
  });
  document.body.append(dialog);
  dialog.showModal();
  dialog.scrollTop = 0; // on a small screen, the focused Close button scrolled the title away
}
