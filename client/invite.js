// The invite: the whole link (wrapping, so a phone shows the #secret part too),
// Copy, Share (the system share sheet, where the browser has one) and a QR code
// drawn in the page. Used on /new_chat and in the room's "Show invite QR" dialog.

import { qrFigure } from "/qr.js";
import { copyText, h } from "/ui.js";

/** True when this browser offers the system share sheet. */
function canShare() {
  return typeof navigator.share === "function";
}

/**
 * The link in a read-only text box that wraps anywhere and grows with it, so
 * nothing is cut off; focusing it selects the whole link for copying.
 */
export function inviteField(link, id) {
  return h("textarea", {
    id,
    class: "link-field invite-field",
    readonly: true,
    rows: "3",
    value: link,
    spellcheck: "false",
    autocomplete: "off",
    "aria-describedby": `${id}-help`,
    onfocus: (event) => event.target.select(),
  });
}

/** Copy and (where available) Share buttons that report into `status`. */
export function inviteButtons(link, field, status) {
  const copy = h(
    "button",
    {
      type: "button",
      class: "button",
      onclick: async () => {
        const ok = await copyText(link, field);
        status.textContent = ok ? "Link copied." : "Press Ctrl+C (or ⌘C) to copy the selected link.";
      },
    },
    "Copy link",
  );
  const share = h(
    "button",
    {
      type: "button",
      class: "button share",
      onclick: async () => {
        try {
          await navigator.share({ title: "securechat room", url: link });
          status.textContent = "";
        } catch (error) {
          // Closing the share sheet is not a failure worth a sentence.
          if (error?.name !== "AbortError") status.textContent = "Sharing did not work here: copy the link instead.";
        }
      },
    },
    "Share…",
  );
  share.hidden = !canShare();
  return [copy, share];
}

/** A modal dialog with the room's invite: its QR code, the link, Copy and Share. */
export function showInviteDialog(link) {
  const previous = document.activeElement;
  const field = inviteField(link, "dialog-invite-link");
  const status = h("p", { class: "hint", role: "status" });
  const dialog = h(
    "dialog",
    { class: "dialog invite-dialog", "aria-labelledby": "invite-dialog-title" },
    h("h2", { id: "invite-dialog-title" }, "Invite to this room"),
    h("p", {}, "Scan this code with a phone's camera, or send the link. Anyone with it can read and write here."),
    qrFigure(link),
    h("label", { for: "dialog-invite-link" }, "Invite link"),
    field,
    h("p", { id: "dialog-invite-link-help", class: "hint" }, "The part after # is the room's key: share it privately."),
    h(
      "div",
      { class: "dialog-actions" },
      inviteButtons(link, field, status),
      h("button", { type: "button", class: "button primary", autofocus: true, onclick: () => dialog.close() }, "Close"),
    ),
    status,
  );
  dialog.addEventListener("close", () => {
    dialog.remove();
    if (previous instanceof HTMLElement) previous.focus();
  });
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}
