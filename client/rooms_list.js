// "Your rooms" on /new_chat: the rooms this browser has keys for, newest first,
// each with its fingerprint, the name used in it and its last activity, a link
// to open it (no secret: the key is in IndexedDB) and Forget.

import { compactFingerprint, roomFingerprint } from "/fingerprint.js";
import { forgetRoom, listRooms } from "/store.js";
import { confirmDialog, formatDateTime, h, shortId } from "/ui.js";

export const MAX_LISTED_ROOMS = 20; // a list to scan at a glance; older rooms still open from their link

function lastActive(record) {
  return record.lastActivity || record.updatedAt || 0;
}

async function roomItem(record, list, section) {
  const fingerprint = await roomFingerprint(record.secret, record.roomId);
  const label = fingerprint ? fingerprint.text : `Room ${shortId(record.roomId)}`;
  const when = lastActive(record);
  const item = h("li", { class: "room-item", "data-room": record.roomId });
  const forget = h(
    "button",
    {
      type: "button",
      class: "button danger",
      "aria-label": `Forget ${label}`,
      onclick: async () => {
        const ok = await confirmDialog({
          title: "Forget this room?",
          text: `This browser deletes its key for “${label}”. The messages stay in the room; to come back you need the invite link again.`,
          confirm: "Forget this room",
          danger: true,
        });
        if (!ok) return;
        await forgetRoom(record.roomId);
        item.remove();
        // The focus goes to the list's heading, or to the page's when the list is gone.
        section.hidden = !list.children.length;
        (section.hidden ? document.getElementById("new-title") : section.querySelector("h2"))?.focus();
      },
    },
    "Forget",
  );
  item.append(
    h(
      "a",
      { class: "room-link", href: `/room/${record.roomId}` },
      fingerprint ? compactFingerprint(fingerprint) : label,
    ),
    h(
      "p",
      { class: "room-meta" },
      record.name ? ["You are “", h("bdi", {}, record.name), "”"] : "No name set",
      when ? [" · last active ", h("time", { datetime: new Date(when).toISOString() }, formatDateTime(when))] : null,
    ),
    forget,
  );
  return item;
}

/** The "Your rooms" section, hidden while this browser knows no room. */
export function roomsListSection() {
  const list = h("ul", { class: "rooms-list" });
  const section = h(
    "section",
    { class: "card rooms", "aria-labelledby": "rooms-title" },
    h("h2", { id: "rooms-title", tabindex: "-1" }, "Your rooms"),
    h("p", { class: "hint" }, "Rooms this browser has the key for. Opening one needs no link."),
    list,
  );
  section.hidden = true;
  listRooms()
    .then(async (records) => {
      const newest = records.sort((a, b) => lastActive(b) - lastActive(a)).slice(0, MAX_LISTED_ROOMS);
      const items = await Promise.all(newest.map((record) => roomItem(record, list, section)));
      list.append(...items);
      section.hidden = items.length === 0;
    })
    .catch(() => {
      section.hidden = true; // the list is a convenience: the page works without it
    });
  return section;
}
