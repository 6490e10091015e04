// The header's popovers (People, Menu) and where the focus goes around them.
//
// Each popover is a <details>: the browser gives it keyboard and screen reader
// support. At most one is open; a click outside it or Escape closes it.

/** Keep at most one of `popovers` open; close it on an outside click and on Escape. */
export function managePopovers(popovers) {
  for (const details of popovers) {
    details.addEventListener("toggle", () => {
      if (!details.open) return;
      for (const other of popovers) if (other !== details) other.open = false;
    });
  }
  document.addEventListener("pointerdown", (event) => {
    for (const details of popovers) {
      if (details.open && !details.contains(event.target)) details.open = false;
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    for (const details of popovers) {
      if (!details.open) continue;
      const inside = details.contains(document.activeElement);
      details.open = false;
      // Only a focus that was inside goes back to the button; a text box keeps its own.
      if (inside) details.querySelector("summary").focus();
    }
  });
}

/**
 * Close a popover whose item was chosen. The item is hidden now, so the focus
 * goes to the popover's button (not to the page body), and a dialog opened next
 * returns it there.
 */
export function closePopover(details) {
  details.open = false;
  if (details.isConnected) details.querySelector("summary").focus();
}

/**
 * A button that acts on a text box without taking the focus from it, so that a
 * phone's keyboard stays open after each message.
 */
export function keepFocus(button, box) {
  button.addEventListener("mousedown", (event) => event.preventDefault());
  button.addEventListener("click", () => box.focus());
}
