// The chat page: one document for /new_chat and /room/<roomId>.
//
// /new_chat makes a room in the page and shows its invite link. An invite link
// /room/<roomId>#<secret> derives the room's keys, stores them in IndexedDB and
// reloads without the #secret; /room/<roomId> then works from the stored keys.
// Everything shown is built with createElement/textContent (see ui.js).

import { b64urlDecode, cryptoAvailable, deriveRoomKeys, newClientId, newRoom } from "/crypto.js";
import { inviteButtons, inviteField } from "/invite.js";
import { qrFigure } from "/qr.js";
import { Room } from "/room.js";
import { PRIVACY_TITLE, privacyDialog } from "/privacy.js";
import { roomsListSection } from "/rooms_list.js";
import { loadRoom, saveRoom } from "/store.js";
import { TITLE, h, inviteLink, newChatLink, replace, setState, showProblem } from "/ui.js";

const ROOM_PATH = /^\/room\/([A-Za-z0-9_-]{1,64})$/;

// ----- /new_chat -------------------------------------------------------------------

function showNewChat() {
  setState("new-chat");
  document.title = `New chat · ${TITLE}`;
  const { roomId, secret } = newRoom();
  const link = inviteLink(roomId, secret);
  const field = inviteField(link, "invite-link");
  const copied = h("p", { class: "hint", role: "status" });
  const enterButton = h(
    "button",
    {
      type: "button",
      class: "button primary",
      onclick: async () => {
        enterButton.disabled = true;
        const record = await makeRecord(roomId, secret, null);
        const stored = await saveRoom(record);
        // Enter in place: the #secret never becomes a URL of this tab.
        history.pushState(null, "", `/room/${roomId}`);
        showRoom(record, { memoryOnly: !stored });
      },
    },
    "Enter the room",
  );
  replace(
    document.getElementById("app"),
    h(
      "section",
      { class: "card", "aria-labelledby": "new-title" },
      h("h1", { id: "new-title", tabindex: "-1" }, "Your new chat room"),
      h(
        "p",
        {},
        "Send this link to the people you want to talk to. Anyone with the link can read and write in the room, so share it privately.",
      ),
      h("label", { for: "invite-link" }, "Invite link"),
      field,
      h(
        "p",
        { id: "invite-link-help", class: "hint" },
        "The part after # is the room's key. It was made in this page and never goes to the server, but the browsers that open the link keep it in their history.",
      ),
      h("button", { type: "button", class: "link-button privacy-link", onclick: privacyDialog }, PRIVACY_TITLE),
      h("div", { class: "actions" }, inviteButtons(link, field, copied), enterButton),
      copied,
      qrFigure(link),
    ),
    roomsListSection(),
  );
  document.getElementById("app").querySelector("h1").focus();
}

async function makeRecord(roomId, secret, existing) {
  const { key, token } = await deriveRoomKeys(b64urlDecode(secret), roomId);
  // Opening the link again keeps what this browser knew of the room (name, settings,
  // the mids it sent); only the keys come from the link.
  const record = { ...existing, roomId, key, token, secret, clientId: existing?.clientId || newClientId() };
  if (!existing) {
    record.sentMids = []; // a new record knows all it sends from the start (mine.js)
    record.askName = true; // first time in this browser: offer to choose a name
  }
  return record;
}

// ----- /room/<roomId> --------------------------------------------------------------

async function openRoomPage(roomId) {
  const fragment = location.hash.slice(1);
  if (fragment) {
    const secret = b64urlDecode(fragment);
    if (!secret || secret.length !== 32) {
      history.replaceState(null, "", location.pathname);
      showProblem("This link is damaged", [
        "The part of the link after # should be the room's key, but it is not complete or has been changed.",
        "Ask for the invite link again and open it exactly as you received it.",
      ]);
      return;
    }
    const existing = await loadRoom(roomId);
    const record = await makeRecord(roomId, fragment, existing);
    if (await saveRoom(record)) {
      // The key is stored: load the page again without the #secret, replacing
      // this history entry so the secret is not left in the session history.
      location.replace(location.pathname);
      return;
    }
    history.replaceState(null, "", location.pathname);
    showRoom(record, { memoryOnly: true });
    return;
  }
  const record = await loadRoom(roomId);
  if (!record) {
    showProblem(
      "This room's key is missing",
      [
        "This address names a chat room, but the key to read it is not in this browser.",
        "Open the full invite link you were sent: it ends with # and a long code. If you forgot this room or used a private window, the key is gone from here and you need the link again.",
      ],
      [newChatLink()],
    );
    return;
  }
  showRoom(record, { memoryOnly: false });
}

function showRoom(record, options) {
  return new Room(record, options);
}

// ----- start -----------------------------------------------------------------------

async function main() {
  if (!cryptoAvailable()) {
    showProblem("This page needs a secure connection", [
      "Messages are encrypted in this page with your browser's Web Crypto, which browsers only allow on secure pages.",
      "Open the chat through HTTPS, a .onion address, or localhost. Whoever runs the server needs to set up HTTPS.",
    ]);
    return;
  }
  window.addEventListener("popstate", () => location.reload());
  const path = location.pathname;
  if (path === "/new_chat") {
    showNewChat();
    return;
  }
  const match = ROOM_PATH.exec(path);
  if (match) {
    await openRoomPage(match[1]);
    return;
  }
  showProblem("Nothing here", ["This address is not a chat room."], [newChatLink()]);
}

main().catch((error) => {
  showProblem("Something went wrong", [`The page could not start: ${error.message}`], [newChatLink()]);
});
