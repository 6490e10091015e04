// Small DOM helpers. Every element is made with createElement and every text is
// set with textContent: no string ever becomes HTML (the page runs under
// Trusted Types with no policy, so innerHTML would throw anyway).

/**
 * h("button", {class: "x", type: "button", onclick: fn}, "text", child, ...)
 * Attributes starting with "on" become listeners; `false`/null attributes are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.className = value;
    } else if (name === "value") {
      el.value = value;
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace all children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

const PALETTE_SIZE = 10; // colour classes .who-0 .. .who-9 in app.css

/** A stable colour class for a client id (FNV-1a hash). */
export function colourClass(clientId) {
  let hash = 0x811c9dc5;
  for (let i = 0; i < clientId.length; i++) {
    hash ^= clientId.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return `who-${hash % PALETTE_SIZE}`;
}

/** The short form of a client id shown next to names. */
export function shortId(clientId) {
  return clientId.slice(0, 6);
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

export function formatTime(ms) {
  return timeFormat.format(new Date(ms));
}

export function formatDateTime(ms) {
  return dateTimeFormat.format(new Date(ms));
}

/**
 * Ask a yes/no question in a modal <dialog>. Resolves true when confirmed.
 * Escape and the cancel button resolve false; focus returns where it was.
 */
export function confirmDialog({ title, text, confirm, danger = false }) {
  return new Promise((resolve) => {
    const previous = document.activeElement;
    // Buttons close the dialog themselves: no <form>, so nothing is ever submitted.
    const close = (value) => () => dialog.close(value);
    const dialog = h(
      "dialog",
      { class: "dialog", "aria-labelledby": "dialog-title", "aria-describedby": "dialog-text" },
      h("h2", { id: "dialog-title" }, title),
      h("p", { id: "dialog-text" }, text),
      h(
        "div",
        { class: "dialog-actions" },
        h("button", { type: "button", class: "button", autofocus: true, onclick: close("cancel") }, "Cancel"),
        h("button", { type: "button", class: danger ? "button danger" : "button primary", onclick: close("ok") }, confirm),
      ),
    );
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "ok");
      dialog.remove();
      if (previous instanceof HTMLElement) previous.focus();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/**
 * Ask for a display name in a modal <dialog>. Resolves the trimmed name, "" to
 * remove it, or null when cancelled.
 */
export function nameDialog(current, maxLength) {
  return new Promise((resolve) => {
    const previous = document.activeElement;
    const close = (value) => () => dialog.close(value);
    const input = h("input", {
      id: "name-input",
      type: "text",
      maxlength: maxLength,
      autocomplete: "nickname",
      value: current || "",
      "aria-describedby": "name-help",
      onkeydown: (event) => {
        if (event.key === "Enter" && !event.isComposing) {
          event.preventDefault();
          dialog.close("ok");
        }
      },
    });
    const dialog = h(
      "dialog",
      { class: "dialog", "aria-labelledby": "dialog-title" },
      h("h2", { id: "dialog-title" }, "Your name in this room"),
      h("label", { for: "name-input" }, "Display name"),
      input,
      h(
        "p",
        { id: "name-help", class: "hint" },
        `Up to ${maxLength} characters. It travels encrypted inside each message you send. Leave it empty to show only your short id.`,
      ),
      h(
        "div",
        { class: "dialog-actions" },
        h("button", { type: "button", class: "button", onclick: close("cancel") }, "Cancel"),
        h("button", { type: "button", class: "button primary", onclick: close("ok") }, "Save"),
      ),
    );
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "ok" ? input.value.trim().slice(0, maxLength) : null);
      dialog.remove();
      if (previous instanceof HTMLElement) previous.focus();
    });
    document.body.append(dialog);
    dialog.showModal();
    input.select();
  });
}

/** Copy text to the clipboard; falls back to selecting it in `field` for Ctrl+C. */
export async function copyText(text, field) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    if (field) {
      field.focus();
      field.select();
    }
    return false;
  }
}

// ----- the page frame ----------------------------------------------------------------

export const TITLE = "securechat";

function root() {
  return document.getElementById("app");
}

/** Name the page's current view (body[data-state]) for styles and tests. */
export function setState(state) {
  document.body.dataset.state = state;
}

export function inviteLink(roomId, secret) {
  return `${location.origin}/room/${roomId}#${secret}`;
}

/** A full-page explanation instead of a broken page. */
export function showProblem(title, paragraphs, actions = []) {
  setState("problem");
  document.title = `${title} · ${TITLE}`;
  replace(
    root(),
    h(
      "section",
      { class: "card problem", "aria-labelledby": "problem-title" },
      h("h1", { id: "problem-title", tabindex: "-1" }, title),
      paragraphs.map((text) => h("p", {}, text)),
      actions.length ? h("div", { class: "actions" }, actions) : null,
    ),
  );
  root().querySelector("h1").focus();
}

export function newChatLink() {
  return h("a", { class: "button primary", href: "/new_chat" }, "Start a new chat");
}
