// Who is who in the room: the names learned from messages and profile signals,
// the "joined"/"left" lines, and the warning that our id is used elsewhere.
//
// Names are claims: anyone with the link can say they are "Alice". That is why
// a name is always shown beside the sender's short id, and why the short id
// alone is used until a name is known.

import { bdi, cleanName } from "/bidi.js";
import { h, shortId } from "/ui.js";

export const FOLD_MS = 5000; // a leave and a join of one id this close together are one reconnect (a reload, `securechat send`)
export const MAX_NAMES = 1000; // clientIds whose names we remember; anyone with the link can make up more ids
const MAX_HELD = 100; // leaves waiting for a rejoin; past this they are shown at once

export const ELSEWHERE = "Your id, sent elsewhere"; // a message from our clientId that this browser did not send

export const ALSO_CONNECTED =
  "Your id is also connected elsewhere: another tab or device with this room's key is using your id. " +
  "If it is not yours, the link has leaked: start a new room.";

/**
 * The names of the people in a room and its presence lines.
 *
 * `systemLine(parts, at)` draws a quiet line in the message list and returns its
 * element; the Roster removes a "joined" line again when the visit was too short
 * to be worth a line.
 */
export class Roster {
  constructor({ selfId, systemLine }) {
    this.selfId = selfId;
    this.systemLine = systemLine;
    this.names = new Map(); // clientId -> display name, oldest learned first
    this.recentJoins = new Map(); // clientId -> {line, at}: a leave soon after removes the line
    this.heldLeaves = new Map(); // clientId -> timer: a join soon after cancels the line
  }

  /**
   * Remember `name` (null: none) for `clientId`. Returns true when it changed,
   * so the caller redraws what shows it.
   */
  learn(clientId, name) {
    if (clientId === this.selfId) return false; // our own name is the record's
    if ((this.names.get(clientId) || null) === (name || null)) return false;
    this.names.delete(clientId);
    if (name) this.names.set(clientId, name);
    while (this.names.size > MAX_NAMES) this.names.delete(this.names.keys().next().value);
    return true;
  }

  /** "Alice (a33f5e)" or "a33f5e". */
  label(clientId) {
    const name = this.names.get(clientId);
    return name ? `${name} (${shortId(clientId)})` : shortId(clientId);
  }

  /** The person in a system line: "You", or their label, isolated and kept up to date. */
  who(clientId) {
    if (clientId === this.selfId) return "You";
    return bdi(this.label(clientId), { "data-who": clientId });
  }

  /** Redraw every presence label of `clientId` under `root` (its name was learned). */
  relabel(root, clientId) {
    for (const el of root.querySelectorAll("[data-who]")) {
      if (el.dataset.who === clientId) el.textContent = cleanName(this.label(clientId));
    }
  }

  /**
   * A "joined": drawn at once, unless it is the rejoin of someone who left less
   * than FOLD_MS ago (a reload): then neither line is drawn.
   */
  joined(clientId) {
    const held = this.heldLeaves.get(clientId);
    if (held !== undefined) {
      clearTimeout(held);
      this.heldLeaves.delete(clientId);
      return;
    }
    const at = Date.now();
    const line = this.systemLine([this.who(clientId), " joined"], at);
    this.recentJoins.set(clientId, { line, at });
    setTimeout(() => {
      if (this.recentJoins.get(clientId)?.line === line) this.recentJoins.delete(clientId);
    }, FOLD_MS);
  }

  /**
   * A "left": a visit shorter than FOLD_MS (a script that joins, posts and
   * leaves) leaves nothing but its messages; otherwise the line waits FOLD_MS
   * for a rejoin that would cancel it.
   */
  left(clientId) {
    const now = Date.now();
    const recent = this.recentJoins.get(clientId);
    this.recentJoins.delete(clientId);
    if (recent && now - recent.at < FOLD_MS) {
      recent.line?.remove();
      return;
    }
    if (this.heldLeaves.has(clientId)) return; // a second leave of one id: already waiting
    if (this.heldLeaves.size >= MAX_HELD) {
      this.systemLine([this.who(clientId), " left"], now);
      return;
    }
    const timer = setTimeout(() => {
      this.heldLeaves.delete(clientId);
      this.systemLine([this.who(clientId), " left"], now);
    }, FOLD_MS);
    this.heldLeaves.set(clientId, timer);
  }
}

/**
 * The persistent warning that another connection uses our clientId: it stays
 * until the page is reloaded, because what it says stays true.
 */
export function alsoConnectedNotice() {
  return h(
    "p",
    { class: "notice also-connected", role: "alert" },
    ALSO_CONNECTED,
    " ",
    h("a", { href: "/new_chat" }, "Start a new room"),
  );
}
