// The local cache: what this browser has already decrypted for a room, so that a
// reload does not lose what the person saw when the server keeps only its last
// few messages.
//
// Database "securechat_cache", store "messages", key path ["roomId", "id"]: its
// own database, so it never touches store.js's "secure_chat_keys". A record is
//   {roomId, id (the server's message id), iv (12 bytes), data (ciphertext)}.
// `data` is AES-256-GCM under the room's own non-extractable message key, a
// fresh IV per entry, additional data "securechat/v1|<roomId>|cache|<id>": the
// "|" cannot be in a clientId, so a cached entry never opens as a message (nor a
// message as a cached entry), and an entry moved to another id or room fails to
// open. The plaintext is the entry as shown: {id, from, sentAt, mid, text, ts,
// name?} or {id, from, sentAt, unreadable: true}.
//
// Nothing is kept when the browser refused IndexedDB for the room's key (the
// record lives in the tab's memory): then the messages must not outlive the tab.

import { IV_BYTES, randomBytes } from "/crypto.js";
import { openDatabase } from "/idb.js";

export const MAX_CACHED = 500; // messages kept per room; the oldest go (a hostile server cannot fill the disk)
const DB_NAME = "securechat_cache";
const STORE = "messages";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

function openDb() {
  return openDatabase(DB_NAME, STORE, ["roomId", "id"]);
}

/** Every key of one room's records. */
function roomRange(roomId) {
  return IDBKeyRange.bound([roomId, -Infinity], [roomId, Infinity]);
}

/**
 * Run `action(store)` in one transaction and wait for it to commit. `action`
 * must only make IndexedDB requests (awaiting anything else ends a transaction).
 */
async function transaction(mode, action) {
  const db = await openDb();
  const tx = db.transaction(STORE, mode);
  let result;
  const done = new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve(result);
    tx.onabort = () => reject(tx.error || new Error("IndexedDB transaction aborted"));
    tx.onerror = () => reject(tx.error || new Error("IndexedDB transaction failed"));
  });
  action(tx.objectStore(STORE), (value) => {
    result = value;
  });
  return done;
}

/** Delete everything cached for `roomId` (forgetting a room, a cleared history). */
export async function forgetCache(roomId) {
  try {
    await transaction("readwrite", (store) => store.delete(roomRange(roomId)));
  } catch {
    // Nothing stored, nothing to delete.
  }
}

function additionalData(roomId, id) {
  return encoder.encode(`securechat/v1|${roomId}|cache|${id}`);
}

/** What of a shown entry is kept: never the page's own fields (elements, marks). */
function plainOf(entry) {
  if (entry.unreadable) return { id: entry.id, from: entry.from, sentAt: entry.sentAt, unreadable: true };
  const plain = { id: entry.id, from: entry.from, sentAt: entry.sentAt, mid: entry.mid, text: entry.text, ts: entry.ts };
  if (entry.name) plain.name = entry.name;
  return plain;
}

/** A cached entry as it was shown; null unless it has the fields it must have. */
function checked(plain, id) {
  if (!plain || typeof plain !== "object" || plain.id !== id || typeof plain.from !== "string") return null;
  if (!Number.isFinite(plain.sentAt)) return null;
  if (plain.unreadable === true) return { id, from: plain.from, sentAt: plain.sentAt, unreadable: true };
  if (typeof plain.mid !== "string" || typeof plain.text !== "string" || !Number.isInteger(plain.ts)) return null;
  const entry = { id, from: plain.from, sentAt: plain.sentAt, mid: plain.mid, text: plain.text, ts: plain.ts };
  if (typeof plain.name === "string" && plain.name) entry.name = plain.name;
  return entry;
}

/**
 * One room's cache. Writes are gathered and made in one transaction, and every
 * operation runs after the one before, so a clear can never be overtaken by a
 * write of a message it was meant to delete. Failures are quiet: the cache is a
 * convenience, and the server's history still works without it.
 */
export class RoomCache {
  constructor(record, { enabled }) {
    this.key = record.key;
    this.roomId = record.roomId;
    this.enabled = enabled;
    this.waiting = new Map(); // id -> plaintext entry, not yet written
    this.chain = Promise.resolve();
    this.flushQueued = false;
  }

  run(operation) {
    this.chain = this.chain.then(operation).catch(() => {});
    return this.chain;
  }

  /** The cached entries, oldest first; those that do not open are left out. */
  async load() {
    if (!this.enabled) return [];
    let records = [];
    try {
      records = await transaction("readonly", (store, result) => {
        const req = store.getAll(roomRange(this.roomId), MAX_CACHED);
        req.onsuccess = () => result(req.result);
      });
    } catch {
      return [];
    }
    const entries = [];
    for (const record of records || []) {
      try {
        const plain = await crypto.subtle.decrypt(
          { name: "AES-GCM", iv: record.iv, additionalData: additionalData(this.roomId, record.id) },
          this.key,
          record.data,
        );
        const entry = checked(JSON.parse(decoder.decode(plain)), record.id);
        if (entry) entries.push(entry);
      } catch {
        // Written under another key or changed on disk: not shown.
      }
    }
    return entries;
  }

  /** Keep a shown, confirmed entry (written with the others of this moment). */
  remember(entry) {
    if (!this.enabled || !Number.isSafeInteger(entry.id)) return;
    this.waiting.set(entry.id, plainOf(entry));
    // A history far longer than the bound: only its newest entries would stay anyway.
    if (this.waiting.size > MAX_CACHED) this.waiting.delete(this.waiting.keys().next().value);
    if (this.flushQueued) return;
    this.flushQueued = true;
    this.run(() => this.flush());
  }

  async flush() {
    this.flushQueued = false;
    const batch = [...this.waiting.values()];
    this.waiting.clear();
    // Sealed before the transaction opens: awaiting WebCrypto inside it would end it.
    const records = [];
    for (const plain of batch) {
      const iv = randomBytes(IV_BYTES);
      const data = await crypto.subtle.encrypt(
        { name: "AES-GCM", iv, additionalData: additionalData(this.roomId, plain.id) },
        this.key,
        encoder.encode(JSON.stringify(plain)),
      );
      records.push({ roomId: this.roomId, id: plain.id, iv, data });
    }
    await transaction("readwrite", (store) => {
      for (const record of records) store.put(record);
      // Bound the room: the oldest entries beyond MAX_CACHED go.
      const counting = store.count(roomRange(this.roomId));
      counting.onsuccess = () => {
        let extra = counting.result - MAX_CACHED;
        if (extra <= 0) return;
        const cursor = store.openKeyCursor(roomRange(this.roomId));
        cursor.onsuccess = () => {
          if (!cursor.result || extra <= 0) return;
          store.delete(cursor.result.primaryKey);
          extra -= 1;
          cursor.result.continue();
        };
      };
    });
  }

  /** Delete cached entries by server id (the server no longer has them). */
  drop(ids) {
    if (!this.enabled || !ids.length) return;
    for (const id of ids) this.waiting.delete(id);
    this.run(() =>
      transaction("readwrite", (store) => {
        for (const id of ids) store.delete([this.roomId, id]);
      }),
    );
  }

  /** Delete the room's whole cache (a cleared history). */
  clear() {
    this.waiting.clear();
    return this.run(() => forgetCache(this.roomId));
  }

  /** Delete the cache and keep nothing more (the room is forgotten). */
  forget() {
    this.enabled = false;
    return this.clear();
  }
}
