// Room records in IndexedDB: database "secure_chat_keys", store "room_keys",
// keyed by roomId. A record is
//   {roomId, key (non-extractable AES-GCM CryptoKey), token (base64url),
//    clientId, secret (base64url, to copy the invite link again), name?, updatedAt}.
// IndexedDB is the only storage the page uses. When the browser refuses it
// (some private windows, Tor Browser), records live in memory for this tab only.

import { openDatabase } from "/idb.js";

const DB_NAME = "secure_chat_keys";
const STORE = "room_keys";

const memory = new Map(); // roomId -> record, used when IndexedDB is unavailable

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error || new Error("IndexedDB request failed"));
  });
}

function openDb() {
  return openDatabase(DB_NAME, STORE, "roomId");
}

async function withStore(mode, action) {
  const db = await openDb();
  const tx = db.transaction(STORE, mode);
  const done = new Promise((resolve, reject) => {
    tx.oncomplete = resolve;
    tx.onabort = () => reject(tx.error || new Error("IndexedDB transaction aborted"));
    tx.onerror = () => reject(tx.error || new Error("IndexedDB transaction failed"));
  });
  const result = await request(action(tx.objectStore(STORE)));
  await done;
  return result;
}

/** The record for `roomId`, or null. Falls back to this tab's memory. */
export async function loadRoom(roomId) {
  if (memory.has(roomId)) return memory.get(roomId);
  try {
    return (await withStore("readonly", (store) => store.get(roomId))) || null;
  } catch {
    return null;
  }
}

/**
 * Every record this browser knows: IndexedDB's and this tab's memory, in no
 * particular order. For the "Your rooms" list (rooms_list.js).
 */
export async function listRooms() {
  const byId = new Map();
  try {
    for (const record of await withStore("readonly", (store) => store.getAll())) byId.set(record.roomId, record);
  } catch {
    // No IndexedDB here: only what this tab holds in memory.
  }
  for (const [roomId, record] of memory) byId.set(roomId, record);
  return [...byId.values()];
}

/**
 * Save a record. Returns true when it is in IndexedDB, false when the browser
 * refused and it is kept in this tab's memory only.
 */
export async function saveRoom(record) {
  const full = { ...record, updatedAt: Date.now() };
  try {
    await withStore("readwrite", (store) => store.put(full));
    memory.delete(record.roomId);
    return true;
  } catch {
    memory.set(record.roomId, full);
    return false;
  }
}

/** Delete the record for `roomId` wherever it is. */
export async function forgetRoom(roomId) {
  memory.delete(roomId);
  try {
    await withStore("readwrite", (store) => store.delete(roomId));
  } catch {
    // Nothing stored, nothing to delete.
  }
}

/** True if the record lives only in this tab's memory. */
export function inMemoryOnly(roomId) {
  return memory.has(roomId);
}
