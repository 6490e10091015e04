// When a room was last used, for the "Your rooms" list on /new_chat: the room
// record's `lastActivity` (ms since the epoch) is set when the room is opened
// and when messages arrive, and written at most once per ACTIVITY_SAVE_MS.

import { loadRoom, saveRoom } from "/store.js";

export const ACTIVITY_SAVE_MS = 60_000; // the list shows minutes: a busy room writes once a minute, not per message

export class ActivityClock {
  constructor(record) {
    this.record = record;
    this.savedAt = 0;
    this.timer = null;
  }

  /** Note activity now; saved at once if the last save is old enough, else a little later. */
  touch() {
    this.record.lastActivity = Date.now(); // the Room's own saves carry it too
    if (this.timer) return; // a save is already due
    const wait = this.savedAt + ACTIVITY_SAVE_MS - Date.now();
    if (wait <= 0) {
      this.save();
    } else {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.save();
      }, wait);
    }
  }

  async save() {
    this.savedAt = Date.now();
    // Only this field changes: the stored record may have fields this page's copy lacks.
    const stored = await loadRoom(this.record.roomId);
    if (stored) await saveRoom({ ...stored, lastActivity: this.record.lastActivity });
  }

  stop() {
    clearTimeout(this.timer);
    this.timer = null;
  }
}
