// The room's WebSocket: hello first, envelopes in and out, and reconnection.
//
// A RoomConnection owns one socket at a time. It sends `hello` on open (and
// again with a proof of work if the server answers a new room with a
// `challenge`: see pow.js), hands every well-formed server envelope to
// `onEnvelope`, and reports its state to `onStatus`. When the socket closes it
// decides, from the close code, whether to reconnect (with exponential backoff
// and jitter) or to stop and explain.

import { b64urlDecode, b64urlEncode } from "/crypto.js";
import { MAX_BITS, solve } from "/pow.js";

const BACKOFF_BASE_MS = 500; // first retry after 0.25-0.5 s
const BACKOFF_CAP_MS = 30_000; // never wait more than 30 s between tries
const BUSY_RETRY_MS = 60_000; // the server has too many rooms: come back much later
const STABLE_MS = 10_000; // a connection this old resets the backoff
// A full room frees a place only when someone leaves: try again less eagerly than
// after a network loss, so a crowd waiting outside does not knock 60 times a minute.
const FULL_RETRY_BASE_MS = 5_000; // first retry after 2.5-5 s
const FULL_RETRY_CAP_MS = 60_000; // then doubling, never more than a minute apart

// What each close code means for the person, and whether to reconnect by itself.
// Codes not listed (1006 network loss, 1005, ...) reconnect quietly.
export const CLOSE_CODES = {
  1001: { retry: true, text: "The server is restarting." },
  1008: { retry: false, text: "The server closed the connection because this page sent data it did not understand." },
  1009: { retry: false, text: "The server closed the connection because a message was too long." },
  1011: { retry: true, text: "The room had a problem on the server." },
  1012: { retry: true, text: "The server is catching up with the room." },
  1013: { retry: true, slow: true, text: "The server is busy, or cannot reach its storage. This page will try again in a minute." },
  4008: { retry: true, text: "The connection was too slow to keep up with the room." },
  4401: {
    retry: false,
    fatal: true,
    text: "The key in this link does not match this room. The link may be mistyped or incomplete: ask for it again.",
  },
  4408: { retry: true, text: "The server did not get this page's greeting in time." },
  4409: { retry: true, full: true, text: "This room is full. This page will try again on its own…" },
  4410: { retry: true, text: "The connection was idle for too long." },
  4429: { retry: false, text: "Too many messages were sent too fast, so the server closed the connection. Wait a moment, then reconnect." },
  4503: { retry: true, slow: true, text: "The server is busy with too many rooms right now. This page will try again in a minute." },
  4507: { retry: true, slow: true, text: "The server's storage is full, so it cannot open new rooms right now. Rooms that exist still work. This page will try again in a minute." },
};

/** What a page says while its room is full; `count` is the last number of people it saw there. */
export function roomFullText(count) {
  const people = count ? ` (${count} ${count === 1 ? "person" : "people"})` : "";
  return `This room is full${people}. This page will try again on its own…`;
}

/** Parse one server frame; null if it is not an envelope we know. */
export function parseServer(data) {
  if (typeof data !== "string") return null;
  let envelope;
  try {
    envelope = JSON.parse(data);
  } catch {
    return null;
  }
  if (!envelope || typeof envelope !== "object" || typeof envelope.type !== "string") return null;
  switch (envelope.type) {
    case "message":
      return isMessage(envelope) ? envelope : null;
    case "history":
      if (!Array.isArray(envelope.messages)) return null;
      return {
        type: "history",
        messages: envelope.messages.filter(isMessage),
        // The most messages the server keeps; undefined from a server that does not say.
        cap: Number.isSafeInteger(envelope.cap) && envelope.cap >= 0 ? envelope.cap : undefined,
      };
    case "system":
      return typeof envelope.event === "string" &&
        typeof envelope.clientId === "string" &&
        Array.isArray(envelope.participants)
        ? { ...envelope, participants: envelope.participants.filter((p) => typeof p === "string") }
        : null;
    case "history_cleared":
      return typeof envelope.by === "string" ? envelope : null;
    case "signal": // opened (or dropped) by signals.js
      return typeof envelope.from === "string" && typeof envelope.iv === "string" && typeof envelope.ciphertext === "string"
        ? { type: "signal", from: envelope.from, iv: envelope.iv, ciphertext: envelope.ciphertext }
        : null;
    case "error":
      return typeof envelope.code === "string" ? envelope : null;
    case "challenge": {
      const challenge = typeof envelope.challenge === "string" ? b64urlDecode(envelope.challenge) : null;
      const ok = challenge && challenge.length === 16 && Number.isInteger(envelope.bits) && envelope.bits >= 0 && envelope.bits <= MAX_BITS;
      return ok ? { type: "challenge", challenge, bits: envelope.bits } : null;
    }
    default:
      return null;
  }
}

function isMessage(m) {
  return (
    m &&
    m.type === "message" &&
    Number.isSafeInteger(m.id) &&
    typeof m.from === "string" &&
    Number.isFinite(m.sentAt) &&
    typeof m.iv === "string" &&
    typeof m.ciphertext === "string"
  );
}

export function socketUrl(roomId, clientId) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws/${encodeURIComponent(roomId)}?client=${encodeURIComponent(clientId)}`;
}

export class RoomConnection {
  /**
   * @param {object} options
   * @param {string} options.roomId
   * @param {string} options.clientId
   * @param {string} options.token  the access token, base64url
   * @param {(envelope: object) => void} options.onEnvelope
   * @param {(status: object) => void} options.onStatus
   *   status.state is "connecting", "open", "waiting" (retry at status.retryAt)
   *   or "stopped"; status.code and status.text explain the last close.
   */
  constructor({ roomId, clientId, token, onEnvelope, onStatus }) {
    this.roomId = roomId;
    this.clientId = clientId;
    this.token = token;
    this.onEnvelope = onEnvelope;
    this.onStatus = onStatus;
    this.socket = null;
    this.attempt = 0;
    this.timer = null;
    this.stopped = false;
    this.halted = null; // {code, fatal} after a close that is explained, not retried
    this.fullAttempt = 0; // retries of a full room (4409) since the last successful join
    this.openedAt = 0;
    this.onOnline = () => this.reconnectNow();
    window.addEventListener("online", this.onOnline);
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  /** Close for good (forgetting the room, leaving the page). */
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    window.removeEventListener("online", this.onOnline);
    if (this.socket) this.socket.close(1000, "bye");
    this.socket = null;
  }

  get isOpen() {
    return Boolean(this.socket && this.socket.readyState === WebSocket.OPEN && this.authenticated);
  }

  /** Send an envelope if the room is connected; false if it was not sent. */
  send(envelope) {
    if (!this.isOpen) return false;
    this.socket.send(JSON.stringify(envelope));
    return true;
  }

  /**
   * Try now instead of waiting for the backoff. Automatic triggers (the network
   * or the tab coming back) only cut a wait short; after a close that is not
   * retried (room full, rate abuse, ...) only the person's `manual` request
   * reconnects, and never after a wrong key.
   */
  reconnectNow({ manual = false } = {}) {
    if (this.stopped || (this.socket && this.socket.readyState <= WebSocket.OPEN)) return;
    if (this.halted && (!manual || this.halted.fatal)) return;
    this.halted = null;
    clearTimeout(this.timer);
    this.attempt = 0;
    this.connect();
  }

  connect() {
    clearTimeout(this.timer);
    this.authenticated = false;
    this.onStatus({ state: "connecting" });
    let socket;
    try {
      socket = new WebSocket(socketUrl(this.roomId, this.clientId));
    } catch {
      this.scheduleRetry({});
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      this.openedAt = Date.now();
      socket.send(JSON.stringify({ type: "hello", auth: this.token }));
    };
    socket.onmessage = (event) => {
      if (socket !== this.socket) return;
      const envelope = parseServer(event.data);
      if (!envelope) return;
      if (envelope.type === "challenge") {
        this.answer(socket, envelope);
        return;
      }
      if (envelope.type === "history") {
        // The server sends history only after a valid hello.
        this.authenticated = true;
      }
      if (envelope.type === "system" && envelope.event === "connected") {
        this.fullAttempt = 0;
        this.onStatus({ state: "open" });
      }
      this.onEnvelope(envelope);
    };
    socket.onclose = (event) => {
      if (socket !== this.socket) return;
      this.socket = null;
      this.authenticated = false;
      if (this.stopped) return;
      if (this.openedAt && Date.now() - this.openedAt > STABLE_MS) this.attempt = 0;
      this.openedAt = 0;
      const info = CLOSE_CODES[event.code];
      if (info && !info.retry) {
        this.halted = { code: event.code, fatal: Boolean(info.fatal) };
        this.onStatus({ state: "stopped", code: event.code, text: info.text, fatal: Boolean(info.fatal) });
        return;
      }
      this.scheduleRetry({ code: event.code, text: info ? info.text : "", slow: info && info.slow, full: info && info.full });
    };
  }

  /** A new room on a busy server: pay the proof of work, then say hello again. */
  async answer(socket, { challenge, bits }) {
    this.onStatus({ state: "securing", bits });
    const started = performance.now();
    const nonce = await solve(challenge, bits, () => socket !== this.socket || socket.readyState !== WebSocket.OPEN);
    if (!nonce) return; // the socket closed meanwhile: the reconnect starts over
    this.lastProofMs = performance.now() - started;
    socket.send(JSON.stringify({ type: "hello", auth: this.token, proof: b64urlEncode(nonce) }));
    this.onStatus({ state: "connecting" });
  }

  scheduleRetry({ code, text, slow, full }) {
    // Exponential backoff with jitter: the delay is drawn from [d/2, d] so that
    // everyone cut off by one server restart does not come back in the same instant.
    let ceiling = slow ? BUSY_RETRY_MS : Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
    if (full) ceiling = Math.min(FULL_RETRY_CAP_MS, FULL_RETRY_BASE_MS * 2 ** this.fullAttempt);
    const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    if (full) this.fullAttempt += 1;
    else this.attempt += 1;
    this.onStatus({ state: "waiting", code, text, retryAt: Date.now() + delay });
    this.timer = setTimeout(() => this.connect(), delay);
  }
}
