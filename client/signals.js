// Ephemeral encrypted signals (docs/protocol.md): a profile ({kind:"profile",
// name?}) or a typing notice ({kind:"typing"}). The server relays a signal to the
// room's other connections and never stores it, so it cannot replay one later.
//
// A signal is AES-256-GCM under the room's message key, like a message, but its
// additional data ends in "|signal": a signal can never be opened as a message
// (nor a message as a signal), whatever the server relays it as.

import { IV_BYTES, MAX_NAME, b64urlDecode, b64urlEncode, randomBytes } from "/crypto.js";

export const MAX_SIGNAL_BYTES = 1024; // the server refuses larger ciphertexts (too_large)
const MIN_CIPHERTEXT_BYTES = 17; // the 16-byte GCM tag and at least one byte

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

function additionalData(roomId, sender) {
  return encoder.encode(`securechat/v1|${roomId}|${sender}|signal`);
}

/**
 * Encrypt a signal body as sent by `sender`. Returns the client envelope
 * {type: "signal", iv, ciphertext}. `iv` is for test vectors only: real signals
 * always get a fresh one.
 */
export async function sealSignal(key, roomId, sender, body, iv = randomBytes(IV_BYTES)) {
  const ciphertext = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv, additionalData: additionalData(roomId, sender) },
    key,
    encoder.encode(JSON.stringify(body)),
  );
  return { type: "signal", iv: b64urlEncode(iv), ciphertext: b64urlEncode(new Uint8Array(ciphertext)) };
}

/** A profile signal's body: the name when there is one (absent means none). */
export function profileBody(name) {
  return name ? { kind: "profile", name } : { kind: "profile" };
}

/**
 * Decrypt a relayed signal from `sender`. Returns {kind: "profile", name} (name
 * null when absent), {kind: "typing"}, or null for anything that does not open,
 * is not JSON or is of a kind this page does not know: those are dropped silently.
 */
export async function openSignal(key, roomId, sender, iv, ciphertext) {
  const rawIv = b64urlDecode(iv);
  const raw = b64urlDecode(ciphertext);
  if (!rawIv || rawIv.length !== IV_BYTES || typeof sender !== "string") return null;
  if (!raw || raw.length < MIN_CIPHERTEXT_BYTES || raw.length > MAX_SIGNAL_BYTES) return null;
  let body;
  try {
    const plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv: rawIv, additionalData: additionalData(roomId, sender) }, key, raw);
    body = JSON.parse(decoder.decode(plain));
  } catch {
    return null;
  }
  if (!body || typeof body !== "object") return null;
  // Unknown fields are ignored; a known field of the wrong type is no name at all.
  switch (body.kind) {
    case "profile": {
      const name = typeof body.name === "string" && body.name.trim() ? body.name.trim().slice(0, MAX_NAME) : null;
      return { kind: "profile", name };
    }
    case "typing":
      return { kind: "typing" };
    default:
      return null;
  }
}
