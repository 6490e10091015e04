// What a hostile or buggy server can send the message list, made harmless:
// times a Date cannot hold, the server's own words in an error, and more
// messages than a page should draw.

export const MAX_RENDERED = 1000; // messages kept on the page; older ones leave it (the server keeps far fewer)
const MAX_TIME_MS = 8.64e15; // the largest time a JavaScript Date holds

/** A server time (ms) that a Date can hold: out of range, non-numbers clamp. */
export function clampTime(ms) {
  if (typeof ms !== "number" || Number.isNaN(ms)) return 0;
  return Math.min(MAX_TIME_MS, Math.max(-MAX_TIME_MS, ms));
}

// Fixed words per error code (securechat/errors.py ErrorCode): the server's
// `message` is never shown, so it cannot put words in the page's mouth.
const ERROR_TEXTS = {
  bad_json: "The server could not read something this page sent.",
  bad_envelope: "The server refused something this page sent as malformed.",
  unknown_type: "The server did not understand something this page sent.",
  not_authenticated: "The server refused a message sent before the room was joined.",
  unexpected_hello: "The server refused a repeated greeting from this page.",
  binary_not_supported: "The server refused a binary frame from this page.",
  too_large: "The server refused a message as too large.",
  bad_proof: "The server refused this page's proof of work.",
  unavailable: "The server cannot reach its storage right now.",
};
const UNKNOWN_ERROR = "The server refused something this page sent.";

export function errorText(code) {
  return Object.hasOwn(ERROR_TEXTS, code) ? ERROR_TEXTS[code] : UNKNOWN_ERROR;
}

/**
 * Where a confirmed entry goes in `entries` (confirmed ones by server id, then
 * pending ones): the first that is pending or has a larger id. Binary search,
 * since that predicate only turns from false to true along the list.
 */
export function insertionIndex(entries, id) {
  let low = 0;
  let high = entries.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    const other = entries[mid];
    if (other.pending || other.id > id) high = mid;
    else low = mid + 1;
  }
  return low;
}
