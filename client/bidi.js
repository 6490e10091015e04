// Right-to-left text and names. Message text and names get dir="auto" (their own
// first strong character decides); names and ids are isolated in <bdi> so that
// one cannot reorder what stands beside it. Control characters, bidi embeddings,
// overrides and isolates in a name become U+FFFD, as the Python client does
// (securechat/peer/display.py), so a name cannot turn the line around it.

import { h } from "/ui.js";

const UNSAFE = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/g;

/** A name or id from a peer or the server, with its controls made visible. */
export function cleanName(text) {
  return text.replace(/\t/g, " ").replace(UNSAFE, "\ufffd");
}

/** A name or id, isolated from its neighbours and laid out by its own direction. */
export function bdi(text, attrs = {}) {
  return h("bdi", { dir: "auto", ...attrs }, cleanName(text));
}
