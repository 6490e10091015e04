// Web addresses in message text become links. Only http: and https: ones: a
// message is written by anyone holding the invite link, so javascript:, data:,
// file: and every other scheme stay plain text. Links are built as elements
// (text nodes and <a>), never as HTML, so Trusted Types stay strict; they open
// in a new tab that cannot reach back to this page (rel="noopener noreferrer").

import { h } from "/ui.js";

const MAX_LINKS = 50; // per message: more addresses than this stay plain text (each link is an element)
// A candidate starts with http:// or https:// and runs to the next space or
// character that cannot end an address in running text.
const CANDIDATE = /\bhttps?:\/\/[^\s<>"]+/gi;
const ENDING = ".,:;!?'’”)]}*_~"; // punctuation after an address belongs to the sentence

/** Strip sentence punctuation from the end, keeping a ")" that closes a "(" inside. */
function trimCandidate(text) {
  let end = text.length;
  while (end > 0 && ENDING.includes(text[end - 1])) {
    const head = text.slice(0, end);
    // "https://en.wikipedia.org/wiki/Trio_(software)": that ")" is part of it.
    if (text[end - 1] === ")" && count(head, "(") >= count(head, ")")) break;
    end -= 1;
  }
  return text.slice(0, end);
}

function count(text, char) {
  return text.split(char).length - 1;
}

/** The normalised href for an address, or null unless it is a well-formed http(s) URL. */
export function safeHref(text) {
  let url;
  try {
    url = new URL(text);
  } catch {
    return null;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return null;
  if (!url.hostname) return null;
  return url.href;
}

/**
 * Split `text` into text nodes and <a> elements for its http(s) addresses. The
 * visible text is exactly what the sender wrote; the href is that address as
 * `new URL` normalises it.
 */
export function linkify(text) {
  const parts = [];
  let done = 0;
  let links = 0;
  for (const match of text.matchAll(CANDIDATE)) {
    if (links >= MAX_LINKS) break;
    const address = trimCandidate(match[0]);
    const href = safeHref(address);
    if (!href) continue;
    if (match.index > done) parts.push(document.createTextNode(text.slice(done, match.index)));
    parts.push(h("a", { href, target: "_blank", rel: "noopener noreferrer" }, address));
    done = match.index + address.length;
    links += 1;
  }
  if (done < text.length) parts.push(document.createTextNode(text.slice(done)));
  return parts;
}
