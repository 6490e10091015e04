// Our messages on their way out: from the composer, sealed strictly in order
// (the Room's outbox), sent while connected, sent again after a reconnect or a
// rate_limited (receivers dedupe by mid), and the Retry and Delete of a message
// the server never echoed (client/pending.js).

import { MAX_TEXT, newMid, sealMessage } from "/crypto.js";

const MAX_PENDING = 100; // unconfirmed messages; more means the connection is stuck

/** The composer's text as a new message: shown at once as ours, then sealed and sent. */
export function sendFromComposer(room) {
  const text = room.input.value;
  if (!text.trim()) return;
  if (text.length > MAX_TEXT) {
    room.notify(`A message can have at most ${MAX_TEXT} characters.`);
    return;
  }
  if (room.entries.filter((e) => e.pending).length >= MAX_PENDING) {
    room.notify("Too many messages are waiting for the connection. Wait until they are sent.");
    return;
  }
  const entry = {
    id: null,
    from: room.clientId,
    sentAt: Date.now(),
    mine: true,
    pending: true,
    text,
    mid: newMid(),
    ts: Date.now(),
    name: room.record.name || null,
    delivery: room.connection.isOpen ? "sending" : "queued",
  };
  room.persons.sending(entry);
  room.insert(entry);
  room.input.value = "";
  room.updateCounter();
  transmit(room, entry);
}

/** Seal and send one pending message (again: receivers dedupe by mid). */
function transmit(room, entry) {
  room.outbox = room.outbox
    .then(async () => {
      if (!entry.pending || !room.connection.isOpen) return;
      const sealed = await sealMessage(room.record.key, room.roomId, room.clientId, entry);
      if (room.connection.send({ type: "message", iv: sealed.iv, ciphertext: sealed.ciphertext })) {
        room.deliveries.sent(entry);
      }
    })
    .catch((error) => room.notify(`The message could not be encrypted: ${error.message}`));
}

/** Send every message the server has not confirmed yet. */
export function flushPending(room) {
  if (!room.connection || !room.connection.isOpen) return;
  for (const entry of room.entries) if (entry.pending) transmit(room, entry);
}

/** "Not delivered" → Retry: the same message again (same mid), on the open connection. */
export function retry(room, entry) {
  entry.delivery = "queued";
  room.renderMark(entry);
  transmit(room, entry);
  room.input.focus();
}

/** "Not delivered" → Delete: the page stops trying (should a late echo still come, it shows as sent). */
export function removePending(room, entry) {
  if (!entry.pending) return;
  room.deliveries.settled(entry);
  entry.pending = false;
  entry.el.remove();
  room.entries.splice(room.entries.indexOf(entry), 1);
  room.byMid.delete(entry.mid);
  if (!room.entries.length) room.list.append(room.empty);
  room.input.focus();
}
