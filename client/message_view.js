// One message of the list as elements: the sender (a name that travelled
// encrypted, with the short id beside it; "You" only for what this browser sent),
// the time, the text with its links, and for our own messages the delivery mark.

import { bdi, cleanName } from "/bidi.js";
import { linkify } from "/links.js";
import { ELSEWHERE } from "/people.js";
import { drawDelivery } from "/pending.js";
import { colourClass, formatDateTime, formatTime, h, shortId } from "/ui.js";

/**
 * The <li> for `entry`. `names` maps clientIds to the names learned so far;
 * `drawMark(el)` fills in our own message's mark once the element exists.
 */
export function renderMessage(entry, names, drawMark) {
  const classes = ["message", entry.mine ? "mine" : "theirs", colourClass(entry.from)];
  if (entry.unreadable) classes.push("unreadable");
  if (entry.elsewhere) classes.push("elsewhere");
  const el = h("li", { class: classes.join(" "), "data-from": entry.from });
  const time = h("time", {}, "");
  setTime(time, entry.sentAt);
  // Without a name, the short id alone, in the sender's colour.
  const name = entry.mine ? "You" : entry.elsewhere ? ELSEWHERE : entry.name || names.get(entry.from);
  const withId = name && !entry.mine;
  const meta = h(
    "p",
    { class: "meta" },
    bdi(name || shortId(entry.from), { class: "sender" }),
    " ",
    withId ? bdi(shortId(entry.from), { class: "cid", title: `Sender id ${cleanName(entry.from)}` }) : null,
    withId ? " " : null,
    time,
  );
  if (entry.unreadable) {
    el.append(
      meta,
      h("p", { class: "text" }, "This message could not be decrypted. It was sent with another key, or changed on the way."),
    );
  } else {
    el.dataset.mid = entry.mid;
    el.append(meta, h("p", { class: "text", dir: "auto" }, linkify(entry.text)));
  }
  if (entry.mine) {
    entry.markEl = h("span", { class: "mark" });
    meta.append(" ", entry.markEl);
    drawMark(el);
  }
  return el;
}

/**
 * Our own message's state: Queued, Sending…, Not delivered (with `retry` and
 * `remove`), or Sent with the server's time.
 */
export function renderMark(entry, el, { retry, remove }) {
  if (!entry.markEl) return;
  el.classList.toggle("pending", Boolean(entry.pending));
  if (entry.pending) {
    drawDelivery(entry, el, entry.markEl, { retry, remove });
    return;
  }
  delete el.dataset.delivery;
  entry.markEl.textContent = "Sent";
  setTime(el.querySelector("time"), entry.sentAt);
}

function setTime(time, sentAt) {
  time.dateTime = new Date(sentAt).toISOString();
  time.title = formatDateTime(sentAt);
  time.textContent = formatTime(sentAt);
}
