// The room menu's actions: copy or show the invite, change the name, the
// notification settings, clear the history for everyone, forget the room.
// Each closes the menu first; the Room is passed in, and stays the only writer
// of what the page shows.

import { MAX_NAME } from "/crypto.js";
import { showInviteDialog } from "/invite.js";
import { notificationDialog } from "/notify_settings.js";
import { closePopover } from "/popovers.js";
import { forgetRoom } from "/store.js";
import { TITLE, confirmDialog, copyText, inviteLink, nameDialog, newChatLink, setState, showProblem } from "/ui.js";

export async function copyInvite(room) {
  closePopover(room.menu);
  const ok = await copyText(inviteLink(room.roomId, room.record.secret), null);
  room.notify(ok ? "Invite link copied. Share it only with people who should read this room." : "This browser did not allow copying the link.");
}

export function showInvite(room) {
  closePopover(room.menu);
  showInviteDialog(inviteLink(room.roomId, room.record.secret));
}

export async function changeName(room) {
  closePopover(room.menu);
  const name = await nameDialog(room.record.name, MAX_NAME);
  if (name === null) return;
  await room.useName(name);
}

export async function notificationSettings(room) {
  closePopover(room.menu);
  await notificationDialog(room.alerts, room.roomLabel());
}

export async function clearHistory(room) {
  closePopover(room.menu);
  const ok = await confirmDialog({
    title: "Clear the history?",
    text: "This deletes the room's saved messages on the server for everyone in it. It cannot be undone.",
    confirm: "Clear for everyone",
    danger: true,
  });
  if (!ok) return;
  if (!room.connection.send({ type: "clear_history" })) {
    room.notify("Not connected, so the history was not cleared. Try again once connected.");
  }
}

export async function forgetRoomPage(room) {
  closePopover(room.menu);
  const ok = await confirmDialog({
    title: "Forget this room?",
    text: "This browser deletes its key for this room and leaves it. The messages stay in the room; to come back you need the invite link again.",
    confirm: "Forget this room",
    danger: true,
  });
  if (!ok) return;
  room.connection.stop();
  await room.cache.forget();
  room.activity.stop();
  await forgetRoom(room.roomId);
  document.title = TITLE;
  showProblem(
    "Room forgotten",
    [
      "This browser no longer has the key for that room. To return, open the invite link again.",
      // The page cannot reach the browser's global history (client/privacy.js).
      "The invite link, key included, may still be in this browser's history: delete it there too.",
    ],
    [newChatLink()],
  );
  setState("forgotten");
}
