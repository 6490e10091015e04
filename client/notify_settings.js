// The "Notifications…" dialog of the room menu: desktop notifications, their
// previews and the tone, each a checkbox saved in the room record as it
// changes (notify.js). It says plainly when the browser blocks notifications.

import { notificationPermission } from "/notify.js";
import { h } from "/ui.js";

const BLOCKED =
  "This browser blocks notifications from this site. To allow them, open the site's settings (the icon beside the address) and allow notifications, then turn this on again.";
const DISMISSED = "The browser did not allow notifications. Turn this on again to be asked again.";
const UNSUPPORTED = "This browser cannot show notifications from this page.";
const FAILED =
  "This browser did not show the last notification although it allows them: some browsers, on phones especially, show notifications only for installed apps. The title still counts new messages.";
const MEMORY_ONLY = "These settings are kept in this tab only: this browser refused to store them.";

function checkbox(id, label, hint, checked) {
  const input = h("input", { id, type: "checkbox" });
  input.checked = checked;
  const row = h(
    "div",
    { class: "setting" },
    input,
    h("label", { for: id }, label),
    hint ? h("p", { id: `${id}-hint`, class: "hint" }, hint) : null,
  );
  if (hint) input.setAttribute("aria-describedby", `${id}-hint`);
  return { input, row };
}

/** Show the settings of `notifier` in a modal dialog; resolves when it closes (focus returns). */
export function notificationDialog(notifier, roomLabel) {
  return new Promise((resolve) => {
    const previous = document.activeElement;
    const settings = notifier.settings;
    const permission = notificationPermission();
    const desktop = checkbox(
      "notify-desktop",
      "Desktop notifications",
      `While this tab is hidden: “New message in ${roomLabel}”, without who wrote it or what it says.`,
      settings.desktop && permission === "granted",
    );
    const previews = checkbox(
      "notify-previews",
      "Show the sender and text in notifications",
      "Notifications are shown by your system, outside this page, where others may see them.",
      settings.previews,
    );
    const sound = checkbox("notify-sound", "Play a short sound", "For new messages while this tab is hidden.", settings.sound);
    const status = h("p", { class: "hint notify-status", role: "status" });
    const say = (text) => {
      status.textContent = text;
    };
    const stored = (ok) => {
      if (!ok) say(MEMORY_ONLY);
    };
    previews.input.disabled = !desktop.input.checked;
    if (permission === "denied") say(BLOCKED);
    else if (notifier.failed && settings.desktop) say(FAILED);
    if (permission === "unsupported") {
      desktop.input.disabled = true;
      say(UNSUPPORTED);
    }

    desktop.input.addEventListener("change", async () => {
      say("");
      if (!desktop.input.checked) {
        previews.input.disabled = true;
        stored(await notifier.update({ desktop: false }));
        return;
      }
      // Asked only now, from the person's own click.
      const answer = await notifier.enableDesktop();
      if (answer === "granted") {
        previews.input.disabled = false;
        return;
      }
      desktop.input.checked = false;
      say(answer === "denied" ? BLOCKED : answer === "unsupported" ? UNSUPPORTED : DISMISSED);
    });
    previews.input.addEventListener("change", async () => {
      stored(await notifier.update({ previews: previews.input.checked }));
    });
    sound.input.addEventListener("change", async () => {
      stored(await (sound.input.checked ? notifier.enableSound() : notifier.update({ sound: false })));
    });

    const dialog = h(
      "dialog",
      { class: "dialog notify-dialog", "aria-labelledby": "dialog-title" },
      h("h2", { id: "dialog-title" }, "Notifications"),
      h("p", {}, "While this tab is hidden, its title counts new messages. This room can also:"),
      desktop.row,
      previews.row,
      sound.row,
      status,
      h(
        "div",
        { class: "dialog-actions" },
        h("button", { type: "button", class: "button primary", onclick: () => dialog.close() }, "Done"),
      ),
    );
    dialog.addEventListener("close", () => {
      dialog.remove();
      if (previous instanceof HTMLElement) previous.focus();
      resolve();
    });
    document.body.append(dialog);
    dialog.showModal();
    desktop.input.focus();
  });
}
