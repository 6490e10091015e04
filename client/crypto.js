// Room keys and message sealing with WebCrypto, exactly as docs/protocol.md says.
//
// From the invite link's 32-byte secret and the room id, HKDF-SHA256 with the
// salt "securechat/v1" derives two independent 32-byte values:
//   - the message key (info "message-key:<roomId>"), an AES-256-GCM key that is
//     imported non-extractable, so no script can read its bytes back;
//   - the access token (info "room-access:<roomId>"), sent in `hello`; the server
//     keeps only its SHA-256 and never sees the secret or the message key.
// A message is AES-GCM with a fresh random 12-byte IV and additional data
// "securechat/v1|<roomId>|<sender clientId>": a ciphertext that the server moves
// to another room or relays as someone else's fails to decrypt.

export const SECRET_BYTES = 32;
export const ROOM_ID_BYTES = 16;
export const IV_BYTES = 12;
export const MID_BYTES = 12;
export const MAX_TEXT = 4000; // UTF-16 code units, as String.length counts
export const MAX_NAME = 40; // characters of a display name

const SALT = "securechat/v1";
const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** True when this page can do what the protocol needs (a secure context). */
export function cryptoAvailable() {
  return Boolean(window.isSecureContext && globalThis.crypto && crypto.subtle);
}

// ----- base64url without padding ---------------------------------------------------

export function b64urlEncode(bytes) {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/** Decode canonical unpadded base64url; null for anything else. */
export function b64urlDecode(text) {
  if (typeof text !== "string" || !/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) {
    return null;
  }
  const padded = text.replaceAll("-", "+").replaceAll("_", "/") + "==".slice(0, (4 - (text.length % 4)) % 4);
  let binary;
  try {
    binary = atob(padded);
  } catch {
    return null;
  }
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  // Canonical: one byte string has exactly one accepted spelling (no stray bits).
  return b64urlEncode(bytes) === text ? bytes : null;
}

export function randomBytes(n) {
  return crypto.getRandomValues(new Uint8Array(n));
}

/** A new room: a 16-byte id and a 32-byte secret, both base64url. */
export function newRoom() {
  return { roomId: b64urlEncode(randomBytes(ROOM_ID_BYTES)), secret: b64urlEncode(randomBytes(SECRET_BYTES)) };
}

/** A message id: base64url of 12 random bytes. */
export function newMid() {
  return b64urlEncode(randomBytes(MID_BYTES));
}

/** A client id for the WebSocket URL: 10 characters of [a-z0-9], ~50 bits. */
export function newClientId() {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  // 252 is the largest multiple of 36 below 256: rejecting above it avoids bias.
  let id = "";
  while (id.length < 10) {
    for (const byte of randomBytes(16)) {
      if (byte < 252 && id.length < 10) id += alphabet[byte % 36];
    }
  }
  return id;
}

// ----- key derivation --------------------------------------------------------------

function hkdfParams(info) {
  return { name: "HKDF", hash: "SHA-256", salt: encoder.encode(SALT), info: encoder.encode(info) };
}

async function importSecret(secret) {
  if (!(secret instanceof Uint8Array) || secret.length !== SECRET_BYTES) {
    throw new Error(`the room secret must be ${SECRET_BYTES} bytes`);
  }
  // The HKDF input key cannot be exported either.
  return crypto.subtle.importKey("raw", secret, "HKDF", false, ["deriveBits", "deriveKey"]);
}

/** 32 bytes of HKDF-SHA256 output for `info` (used for the token and by tests). */
export async function hkdfBytes(secret, info) {
  const ikm = await importSecret(secret);
  return new Uint8Array(await crypto.subtle.deriveBits(hkdfParams(info), ikm, 256));
}

/**
 * Derive a room's keys from its secret.
 * Returns {key: non-extractable AES-GCM CryptoKey, token: base64url access token}.
 */
export async function deriveRoomKeys(secret, roomId) {
  const ikm = await importSecret(secret);
  const key = await crypto.subtle.deriveKey(
    hkdfParams(`message-key:${roomId}`),
    ikm,
    { name: "AES-GCM", length: 256 },
    false, // non-extractable: the key can encrypt and decrypt, never be read out
    ["encrypt", "decrypt"],
  );
  const token = new Uint8Array(await crypto.subtle.deriveBits(hkdfParams(`room-access:${roomId}`), ikm, 256));
  return { key, token: b64urlEncode(token) };
}

// ----- messages --------------------------------------------------------------------

function additionalData(roomId, sender) {
  return encoder.encode(`securechat/v1|${roomId}|${sender}`);
}

/**
 * Encrypt a plaintext {text, mid, ts, name?} as sent by `sender`.
 * Returns {iv, ciphertext} in base64url. `iv` is for test vectors only: reusing
 * an IV under one key breaks AES-GCM, so real messages always get a fresh one.
 */
export async function sealMessage(key, roomId, sender, plaintext, iv = randomBytes(IV_BYTES)) {
  // Field order is the wire order: text, mid, ts, then name when there is one.
  const body = { text: plaintext.text, mid: plaintext.mid, ts: plaintext.ts };
  if (plaintext.name) body.name = plaintext.name;
  const ciphertext = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv, additionalData: additionalData(roomId, sender) },
    key,
    encoder.encode(JSON.stringify(body)),
  );
  return { iv: b64urlEncode(iv), ciphertext: b64urlEncode(new Uint8Array(ciphertext)) };
}

/**
 * Decrypt a relayed message from `sender`. Returns {text, mid, ts, name} or null.
 * Never throws on peer input: a wrong key, a tampered or misattributed ciphertext,
 * a bad IV or a body that is not the plaintext JSON all give null.
 */
export async function openMessage(key, roomId, sender, iv, ciphertext) {
  const rawIv = b64urlDecode(iv);
  const rawCiphertext = b64urlDecode(ciphertext);
  if (!rawIv || rawIv.length !== IV_BYTES || !rawCiphertext || typeof sender !== "string") return null;
  let body;
  try {
    const plain = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: rawIv, additionalData: additionalData(roomId, sender) },
      key,
      rawCiphertext,
    );
    body = JSON.parse(decoder.decode(plain));
  } catch {
    return null;
  }
  // Unknown fields are ignored; the known ones must have their types.
  if (
    !body ||
    typeof body !== "object" ||
    typeof body.text !== "string" ||
    typeof body.mid !== "string" ||
    !Number.isInteger(body.ts)
  ) {
    return null;
  }
  const name = typeof body.name === "string" && body.name.trim() ? body.name.trim().slice(0, MAX_NAME) : null;
  return { text: body.text.slice(0, MAX_TEXT), mid: body.mid, ts: body.ts, name };
}
