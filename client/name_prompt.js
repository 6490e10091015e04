// "Your name" on entering a room for the first time in this browser: optional,
// skippable, and not a modal, so the conversation stays usable behind it.
//
// app.js marks a record it makes from an invite link or "Enter the room" with
// askName; answering or skipping clears it, so a reload does not ask again.

import { h } from "/ui.js";

/**
 * Build the prompt. `done(name)` is called once, with the trimmed name, or null
 * when skipped. Focus starts in the name box; `done` decides where it goes next.
 */
export function namePrompt({ maxLength, done }) {
  let answered = false;
  const finish = (name) => {
    if (answered) return;
    answered = true;
    done(name);
  };
  const input = h("input", {
    id: "first-name-input",
    type: "text",
    maxlength: maxLength,
    autocomplete: "nickname",
    "aria-describedby": "first-name-help",
    onkeydown: (event) => {
      if (event.key === "Enter" && !event.isComposing) {
        event.preventDefault();
        finish(input.value.trim().slice(0, maxLength) || null);
      } else if (event.key === "Escape") {
        event.preventDefault();
        finish(null);
      }
    },
  });
  const el = h(
    "section",
    { class: "name-prompt" },
    h("label", { id: "first-name-label", for: "first-name-input" }, "What should others here call you?"),
    h(
      "div",
      { class: "name-prompt-row" },
      input,
      h(
        "button",
        { type: "button", class: "button primary", onclick: () => finish(input.value.trim().slice(0, maxLength) || null) },
        "Use this name",
      ),
      h("button", { type: "button", class: "button", onclick: () => finish(null) }, "Skip"),
    ),
    h(
      "p",
      { id: "first-name-help", class: "hint" },
      `Optional, up to ${maxLength} characters. It travels encrypted; without one, others see your short id. Change it any time with “Your name…”.`,
    ),
  );
  return { el, input, dismiss: () => (answered = true) };
}
