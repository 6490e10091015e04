// The room fingerprint (docs/protocol.md section 6): four words and four colours
// that everyone with the link sees alike, so people can compare out loud that
// they are in the same room. A mistyped room id opens a new, empty room that
// otherwise looks like any other.
//
// HKDF-SHA256 of the secret (salt "securechat/v1", info "fingerprint:<roomId>",
// as crypto.js derives the keys) gives 32 bytes: bytes 0-3 each pick a word of
// WORDS, bytes 4-7 each pick a colour of COLOURS (modulo 8). The Python client
// (securechat/peer/fingerprint.py) computes the same.

import { b64urlDecode, hkdfBytes } from "/crypto.js";
import { h } from "/ui.js";
import { WORDS } from "/words.js";

export const FINGERPRINT_WORDS = 4; // 32 bits: a mistyped link matches by chance once in 4 billion
export const FINGERPRINT_COLOURS = 4; // 12 more bits, for the eye rather than the voice

// Colour names in protocol order; app.css draws each (.fp-block[data-colour]).
export const COLOURS = Object.freeze(["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown"]);

/**
 * The fingerprint of `roomId` with `secret` (base64url, as in the link).
 * Returns {words: [4 strings], colours: [4 colour names], text: "w1 w2 w3 w4"},
 * or null when there is no usable secret.
 */
export async function roomFingerprint(secret, roomId) {
  const raw = b64urlDecode(secret || "");
  if (!raw || raw.length !== 32) return null;
  const digest = await hkdfBytes(raw, `fingerprint:${roomId}`);
  const words = [...digest.slice(0, FINGERPRINT_WORDS)].map((byte) => WORDS[byte]);
  const colours = [...digest.slice(FINGERPRINT_WORDS, FINGERPRINT_WORDS + FINGERPRINT_COLOURS)].map(
    (byte) => COLOURS[byte % COLOURS.length],
  );
  return { words, colours, text: words.join(" ") };
}

/** The colour blocks, named for screen readers (the colour alone says nothing to them). */
export function colourBlocks(fingerprint) {
  const names = fingerprint.colours.join(", ");
  const blocks = h("span", { class: "fp-blocks", role: "img", "aria-label": `Colours: ${names}`, title: names });
  for (const colour of fingerprint.colours) blocks.append(h("span", { class: "fp-block", "data-colour": colour }));
  return blocks;
}

/** The compact form for a header or a list row: blocks, then the words. */
export function compactFingerprint(fingerprint) {
  return h(
    "span",
    { class: "fingerprint compact", title: "Room fingerprint" },
    colourBlocks(fingerprint),
    " ",
    h("span", { class: "fp-words" }, fingerprint.text),
  );
}

/** The full form for the people popover, with what to do with it. */
export function fullFingerprint(fingerprint) {
  return h(
    "div",
    { class: "fingerprint full" },
    h("h2", {}, "Room fingerprint"),
    h("p", { class: "fp-words" }, fingerprint.text),
    colourBlocks(fingerprint),
    h("p", { class: "hint" }, "Compare these words out loud to be sure you are in the same room."),
  );
}

/**
 * Fill a room page's two fingerprint slots (header and people popover) for `record`.
 * Returns the fingerprint, or null for a record without its secret (nothing shown).
 */
export async function fillFingerprint(record, compactSlot, fullSlot) {
  const fingerprint = await roomFingerprint(record.secret, record.roomId);
  if (!fingerprint) return null;
  compactSlot.replaceChildren(compactFingerprint(fingerprint));
  fullSlot.replaceChildren(fullFingerprint(fingerprint));
  return fingerprint;
}
