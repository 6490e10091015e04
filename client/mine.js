// Which messages this browser sent: a message is "You" only if its mid is here.
//
// Anyone with the room's link can connect under our clientId and send messages
// that decrypt with our additional data, so `from` alone never makes a message
// ours. The mids this browser sent are kept in the room record (IndexedDB, see
// store.js), so our messages stay "You" after a reload, and another tab of this
// browser sees them too.

import { loadRoom, saveRoom } from "/store.js";

export const MAX_OWN_MIDS = 500; // remembered per room; the server keeps far fewer messages than this

/** The mids this browser sent in one room, newest last, bounded. */
export class OwnMessages {
  constructor(record) {
    this.record = record;
    this.mids = new Set(Array.isArray(record.sentMids) ? record.sentMids.slice(-MAX_OWN_MIDS) : []);
    // A record from before mids were kept: what our id sent until now cannot be
    // told apart, and stays "You" as it always was; from now on only mids count.
    if (!Array.isArray(record.sentMids) && record.trackedSince === undefined) {
      record.trackedSince = Date.now();
      saveRoom(record);
    }
  }

  /** Ours: a mid this browser sent, or a message older than a record that kept none. */
  isOurs(mid, sentAt) {
    return this.mids.has(mid) || (this.record.trackedSince !== undefined && sentAt < this.record.trackedSince);
  }

  /**
   * Remember a mid before its message is sent. Resolves once the record is
   * saved (or kept in this tab's memory when the browser refuses storage).
   */
  async add(mid) {
    this.mids.add(mid);
    await this.merge();
  }

  /**
   * Is `mid` ours, looking again at the stored record? Another tab of this
   * browser (same clientId) may have sent it since this page loaded.
   */
  async hasStored(mid, sentAt) {
    if (this.isOurs(mid, sentAt)) return true;
    const stored = await loadRoom(this.record.roomId);
    if (!stored || !Array.isArray(stored.sentMids) || !stored.sentMids.includes(mid)) return false;
    this.mids.add(mid);
    return true;
  }

  // Save our mids together with those another tab stored meanwhile, so two
  // tabs writing the record do not drop each other's.
  async merge() {
    const stored = await loadRoom(this.record.roomId);
    if (!stored) return; // the room was forgotten meanwhile: do not bring its record back
    const all = new Set([...(Array.isArray(stored.sentMids) ? stored.sentMids : []), ...this.mids]);
    const list = [...all].slice(-MAX_OWN_MIDS);
    this.mids = new Set(list);
    this.record.sentMids = list;
    await saveRoom(this.record);
  }
}
