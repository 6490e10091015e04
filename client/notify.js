// Telling a person about new messages while this tab is hidden: a desktop
// notification and a short tone, each opted into per room, on top of the unread
// count in the title (room.js). A notification is shown by the operating
// system, outside this page, so by default it says only that a message came;
// who wrote it and what it says appear only when the person turns on previews.
//
// Settings live in the room record (store.js) as
//   notifications: {desktop: boolean, previews: boolean, sound: boolean}
// all false unless the person turned them on. The browser is asked for its
// permission only when the person turns desktop notifications on.

import { saveRoom } from "/store.js";

const NOTIFY_GAP_MS = 3000; // at most one notification and one tone per this, however fast messages come
const MAX_PREVIEW = 140; // characters of a message shown in a preview
const TONE_HZ = 880; // a soft A5
const TONE_S = 0.18; // long enough to notice, short enough not to annoy
const TONE_GAIN = 0.15; // well below full scale

const OFF = { desktop: false, previews: false, sound: false };

/** Whether this browser can show notifications from this page at all. */
export function notificationsSupported() {
  return typeof globalThis.Notification === "function" && window.isSecureContext;
}

/** The permission this page has: "granted", "denied", "default" or "unsupported". */
export function notificationPermission() {
  return notificationsSupported() ? Notification.permission : "unsupported";
}

export class Notifier {
  /**
   * `record` is the room record (its `notifications` field is read and written);
   * `roomLabel()` names the room in a notification's title.
   */
  constructor({ record, roomLabel }) {
    this.record = record;
    this.roomLabel = roomLabel;
    this.lastAt = -Infinity;
    this.shown = null; // the notification on screen, closed when the tab is visible again
    this.audio = null;
    this.failed = false; // the browser refused to show one although permitted
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) return;
      // The person is back: what they have seen needs no notification, and the
      // first message after they leave again is told at once.
      this.lastAt = -Infinity;
      if (this.shown) this.shown.close();
      this.shown = null;
    });
    // Browsers let a page make sound only after the person interacted with it:
    // the tone's AudioContext is made or resumed inside such an interaction.
    const unlock = () => {
      if (this.settings.sound) this.unlockAudio();
    };
    document.addEventListener("pointerdown", unlock, { capture: true });
    document.addEventListener("keydown", unlock, { capture: true });
  }

  get settings() {
    return { ...OFF, ...this.record.notifications };
  }

  /** Store a change of settings. Resolves false when the browser keeps it in this tab only. */
  update(change) {
    this.record.notifications = { ...this.settings, ...change };
    return saveRoom(this.record);
  }

  /**
   * Turn desktop notifications on, asking the browser first (call it from the
   * person's click). Resolves the permission: only "granted" turns them on.
   */
  async enableDesktop() {
    if (!notificationsSupported()) return "unsupported";
    let permission = Notification.permission;
    if (permission === "default") {
      try {
        permission = await Notification.requestPermission();
      } catch {
        permission = Notification.permission;
      }
    }
    if (permission === "granted") await this.update({ desktop: true });
    return permission;
  }

  /** Turn the tone on (from the person's click, which also lets it play). */
  enableSound() {
    this.unlockAudio();
    return this.update({ sound: true });
  }

  /**
   * A live message from someone else arrived. `sender` is its display name,
   * `text` its plaintext and `unread` the count so far; nothing happens while
   * the tab is visible or for a message of our own id.
   */
  arrived({ from, sender, text, unread }) {
    if (!document.hidden || from === this.record.clientId) return;
    const settings = this.settings;
    const now = Date.now();
    if (now - this.lastAt < NOTIFY_GAP_MS) return;
    this.lastAt = now;
    if (settings.sound) this.tone();
    if (!settings.desktop || notificationPermission() !== "granted") return;
    const body = settings.previews
      ? `${sender}: ${text.length > MAX_PREVIEW ? `${text.slice(0, MAX_PREVIEW)}…` : text}`
      : `${unread} unread message${unread === 1 ? "" : "s"}`;
    try {
      const notification = new Notification(`New message in ${this.roomLabel()}`, {
        body,
        tag: `securechat-${this.record.roomId.slice(0, 6)}`, // a newer one for this room replaces the one before
        icon: "/icon.svg",
      });
      notification.onclick = () => {
        window.focus();
        notification.close();
      };
      this.shown = notification;
    } catch {
      // Some browsers (Chrome on Android) show notifications only from a
      // service worker, which this page has not: the title still counts, and
      // the settings dialog says why nothing appeared.
      this.failed = true;
    }
  }

  unlockAudio() {
    if (!globalThis.AudioContext) return;
    if (!this.audio) this.audio = new AudioContext();
    if (this.audio.state === "suspended") this.audio.resume().catch(() => {});
  }

  /** A short, soft sine tone, made here: no sound file. */
  tone() {
    const audio = this.audio;
    if (!audio || audio.state !== "running") return;
    const start = audio.currentTime;
    const oscillator = audio.createOscillator();
    const gain = audio.createGain();
    oscillator.frequency.value = TONE_HZ;
    gain.gain.setValueAtTime(0.0001, start);
    gain.gain.exponentialRampToValueAtTime(TONE_GAIN, start + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + TONE_S);
    oscillator.connect(gain).connect(audio.destination);
    oscillator.start(start);
    oscillator.stop(start + TONE_S);
  }
}
