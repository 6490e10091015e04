// The room page: the message list, the people, the menu and the composer. What
// the page draws for a message, the status line and the menu's actions live in
// message_view.js, room_status.js and room_menu.js; sending in room_send.js;
// people in room_people.js.
//
// A Room owns one RoomConnection and is the only writer of what the page shows.
// Server envelopes are handled strictly in order (decryption is asynchronous),
// and our own messages are sealed strictly in order.

import { ActivityClock } from "/activity.js";
import { bdi, cleanName } from "/bidi.js";
import { RoomCache } from "/cache.js";
import { MAX_TEXT, openMessage } from "/crypto.js";
import { fillFingerprint } from "/fingerprint.js";
import { MAX_RENDERED, clampTime, errorText, insertionIndex } from "/guard.js";
import { HistoryNotice, olderMissing } from "/history.js";
import { ListLayout } from "/list_layout.js";
import { renderMark, renderMessage } from "/message_view.js";
import { Notifier } from "/notify.js";
import { Deliveries } from "/pending.js";
import { markPresence } from "/presence.js";
import { RoomConnection } from "/protocol.js";
import { changeName, clearHistory, copyInvite, forgetRoomPage, notificationSettings, showInvite } from "/room_menu.js";
import { RoomPeople } from "/room_people.js";
import { flushPending, removePending, retry, sendFromComposer } from "/room_send.js";
import { drawStatus } from "/room_status.js";
import { buildRoomView } from "/room_view.js";
import { saveRoom } from "/store.js";
import { TITLE, colourClass, formatTime, h, replace, setState, shortId } from "/ui.js";

const RESEND_AFTER_MS = 2000; // a rate-limited message is sent again after this

/** The chat itself: one Room per page. */
export class Room {
  constructor(record, { memoryOnly }) {
    this.record = record;
    this.roomId = record.roomId;
    this.clientId = record.clientId;
    this.memoryOnly = memoryOnly;
    this.entries = []; // shown messages: confirmed ones by id, then pending in send order
    this.byMid = new Map();
    this.seenIds = new Set();
    this.persons = new RoomPeople(this); // names, presence lines, our own messages, typing
    this.names = this.persons.roster.names; // clientId -> display name from messages and profiles
    this.participants = [];
    this.unread = 0;
    this.inbox = Promise.resolve(); // server envelopes, handled strictly in order
    this.outbox = Promise.resolve(); // our messages, sealed strictly in order
    this.status = { state: "connecting" };
    this.countdown = null;
    this.layout = new ListLayout(() => this.entries); // dividers, groups, the "Sent" mark
    this.alerts = new Notifier({ record, roomLabel: () => this.roomLabel() });
    this.build();
    // What this browser kept of the room shows first; the server's envelopes wait for it.
    this.cache = new RoomCache(record, { enabled: !memoryOnly });
    this.historyNotice = new HistoryNotice(this.list);
    this.deliveries = new Deliveries({ onChange: (entry) => this.renderMark(entry) });
    this.inbox = this.cache
      .load()
      .then((entries) => this.showCached(entries))
      .catch(() => {});
    this.connection = new RoomConnection({
      roomId: this.roomId,
      clientId: this.clientId,
      token: record.token,
      onEnvelope: (envelope) => {
        this.inbox = this.inbox.then(() => this.handle(envelope)).catch((error) => this.notify(`Something went wrong: ${error.message}`));
      },
      onStatus: (status) => this.setStatus(status),
    });
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) {
        this.unread = 0;
        this.updateTitle();
        this.connection.reconnectNow();
      }
    });
    this.connection.start();
  }

  // ----- building the page ---------------------------------------------------------

  build() {
    setState("room");
    // The elements the Room updates: see buildRoomView for the list.
    Object.assign(
      this,
      buildRoomView({
        roomId: this.roomId,
        canCopy: Boolean(this.record.secret),
        actions: {
          copyInvite: () => copyInvite(this),
          showInvite: () => showInvite(this),
          changeName: () => changeName(this),
          clearHistory: () => clearHistory(this),
          forget: () => this.forget(),
          notifications: () => notificationSettings(this),
          send: () => sendFromComposer(this),
          typed: () => {
            this.updateCounter();
            this.persons.typed();
          },
        },
      }),
    );
    replace(document.getElementById("app"), this.root);
    fillFingerprint(this.record, this.fingerprintCompact, this.fingerprintFull).then((fingerprint) => {
      this.fingerprint = fingerprint;
    });
    this.activity = new ActivityClock(this.record);
    this.activity.touch(); // opened now: "Your rooms" on /new_chat lists it first
    this.updateCounter();
    this.updateTitle();
    if (this.memoryOnly) {
      this.notify(
        "This browser refused to store the room's key (a private window?). It is kept in this tab only: closing or reloading the tab forgets it, and you will need the invite link again.",
        true,
      );
    }
    this.input.focus();
    this.persons.attach();
  }

  // ----- connection state ----------------------------------------------------------

  setStatus(status) {
    drawStatus(this, status);
  }

  /** A quiet note under the header (errors from the server, storage problems). */
  notify(text, sticky = false) {
    clearTimeout(this.noticeTimer);
    this.notice.textContent = text;
    this.notice.hidden = false;
    if (!sticky) {
      this.noticeTimer = setTimeout(() => {
        this.notice.hidden = true;
      }, 8000);
    }
  }

  // ----- server envelopes ----------------------------------------------------------

  async handle(envelope) {
    switch (envelope.type) {
      case "history":
        await this.handleHistory(envelope.messages, envelope.cap);
        break;
      case "message":
        await this.handleMessage(envelope, true);
        break;
      case "system":
        this.handleSystem(envelope);
        break;
      case "signal":
        await this.persons.onSignal(envelope);
        break;
      case "history_cleared":
        this.removeConfirmed(() => true);
        this.cache.clear();
        break;
      case "error":
        this.handleError(envelope);
        break;
    }
  }

  async handleHistory(messages, cap) {
    const ordered = [...messages].sort((a, b) => a.id - b.id);
    // The history is what the server has now. What we show from its range but it
    // no longer has was cleared while we were away; an empty history means all was.
    const ids = new Set(ordered.map((m) => m.id));
    let from = ordered.length ? ordered[0].id : -Infinity;
    // A server below its cap (`cap`, when it says) did not drop older messages for
    // the cap: what this browser kept from before its oldest was cleared too. One
    // that keeps nothing says nothing about a clear.
    if (cap !== undefined && ordered.length < cap) from = -Infinity;
    if (cap === 0) from = Infinity;
    this.removeConfirmed((entry) => entry.id >= from && !ids.has(entry.id));
    // Each message on its own: one the page cannot show never hides the rest.
    let failed = 0;
    for (const message of ordered) {
      try {
        await this.handleMessage(message, false);
      } catch {
        failed += 1;
      }
    }
    if (failed) this.notify(`${failed} message${failed === 1 ? "" : "s"} from the server could not be shown.`);
    const shownIds = this.entries.filter((entry) => !entry.pending).map((entry) => entry.id);
    const kept = cap ?? ordered.length; // a server without `cap` keeps at least what it sent
    if (olderMissing(ordered, kept, shownIds)) this.historyNotice.show(kept);
    else this.historyNotice.hide();
    this.follow.toEnd();
    flushPending(this);
  }

  async handleMessage(received, live) {
    const envelope = { ...received, sentAt: clampTime(received.sentAt) };
    if (this.seenIds.has(envelope.id)) return; // a replay of what we already show
    this.seenIds.add(envelope.id);
    if (live) this.activity.touch();
    const plain = await openMessage(this.record.key, this.roomId, envelope.from, envelope.iv, envelope.ciphertext);
    // From our clientId is not enough to be ours: only a mid this browser sent is.
    const fromMe = envelope.from === this.clientId;
    if (!plain) {
      const unreadable = { id: envelope.id, from: envelope.from, sentAt: envelope.sentAt, mine: false, elsewhere: fromMe, unreadable: true };
      this.insert(unreadable, live);
      this.cache.remember(unreadable);
      return;
    }
    if (plain.name) plain.name = cleanName(plain.name);
    if (plain.name) this.persons.learnName(envelope.from, plain.name);
    const mine = fromMe && (await this.persons.isMine(plain.mid, envelope.sentAt));
    if (live) this.persons.messageShown(envelope.from);
    const known = this.byMid.get(plain.mid);
    if (known) {
      if (known.pending && mine) {
        // Our own message came back: the server has it, and this is its place.
        known.pending = false;
        this.deliveries.settled(known);
        known.id = envelope.id;
        known.sentAt = envelope.sentAt;
        this.entries.splice(this.entries.indexOf(known), 1);
        this.place(known);
        this.renderMark(known);
        this.cache.remember(known);
      }
      return; // a mid shown once, whatever the server replays
    }
    const entry = { id: envelope.id, from: envelope.from, sentAt: envelope.sentAt, mine, elsewhere: fromMe && !mine, ...plain };
    this.insert(entry, live);
    this.cache.remember(entry);
    if (live && !mine) {
      this.announcer.textContent = `${this.displayName(envelope.from)}: ${plain.text}`;
      if (document.hidden) {
        this.unread += 1;
        this.updateTitle();
        this.alerts.arrived({ from: envelope.from, sender: this.displayName(envelope.from), text: plain.text, unread: this.unread });
      }
    }
  }

  handleSystem(envelope) {
    this.participants = [...new Set(envelope.participants)];
    this.renderPeople();
    const who = envelope.clientId === this.clientId ? "You" : bdi(this.displayName(envelope.clientId));
    switch (envelope.event) {
      case "connected":
        this.persons.connected();
        break;
      case "joined":
        this.persons.joined(envelope.clientId);
        break;
      case "left":
        this.persons.left(envelope.clientId);
        break;
      case "also_connected":
        this.persons.alsoConnected();
        break;
      case "cleared":
        this.systemLine([who, " cleared the history"]);
        break;
    }
  }

  handleError(envelope) {
    if (envelope.code === "rate_limited" || envelope.code === "unavailable") {
      this.notify(
        envelope.code === "unavailable"
          ? "The server cannot store messages right now. Waiting messages will be sent again."
          : "Slow down a little: the server asked this page to send less often. Waiting messages will be sent again.",
      );
      clearTimeout(this.resendTimer);
      this.resendTimer = setTimeout(() => flushPending(this), RESEND_AFTER_MS);
      return;
    }
    this.notify(errorText(envelope.code));
  }

  // ----- the message list ----------------------------------------------------------

  insert(entry, live = true) {
    // A full page keeps its newest messages: one older than all of them is not drawn.
    if (!entry.pending && this.entries.length >= MAX_RENDERED && insertionIndex(this.entries, entry.id) === 0) return;
    if (entry.mid) this.byMid.set(entry.mid, entry);
    if (live) this.layout.arrived(entry);
    entry.el = this.renderMessage(entry);
    const change = () => {
      this.place(entry);
      this.empty.remove();
      this.trim();
    };
    // A history batch is not measured message by message (that would lay the
    // whole list out each time); handleHistory scrolls once at its end.
    if (live) this.follow.around(change, { force: entry.mine });
    else change();
  }

  /** Keep at most MAX_RENDERED messages on the page: the oldest confirmed ones leave. */
  trim() {
    while (this.entries.length > MAX_RENDERED && !this.entries[0].pending) {
      const old = this.entries.shift();
      old.el.remove();
      if (old.mid) this.byMid.delete(old.mid);
      this.layout.dropped([old], { all: false });
    }
  }

  /** Put an entry in order: confirmed by server id, pending ones last. */
  place(entry) {
    let index = this.entries.length;
    if (!entry.pending) index = insertionIndex(this.entries, entry.id);
    const after = this.entries[index];
    this.entries.splice(index, 0, entry);
    // A system line stays where it was written, so confirmed messages go before
    // the next entry's element rather than at the very end.
    if (after) this.list.insertBefore(entry.el, after.el);
    else this.list.append(entry.el);
    this.layout.placed(index);
  }

  removeConfirmed(predicate) {
    const removed = this.entries.filter((entry) => !entry.pending && predicate(entry));
    if (!removed.length) return;
    this.cache.drop(removed.map((entry) => entry.id));
    for (const entry of removed) {
      entry.el.remove();
      this.entries.splice(this.entries.indexOf(entry), 1);
      this.seenIds.delete(entry.id);
    }
    this.layout.dropped(removed);
    // System lines about a history that is gone are noise too.
    if (!this.entries.length) {
      this.historyNotice.hide();
      for (const line of this.list.querySelectorAll(".system")) line.remove();
      this.list.append(this.empty);
    }
  }

  renderMessage(entry) {
    return renderMessage(entry, this.names, (el) => this.renderMark(entry, el));
  }

  renderMark(entry, el = entry.el) {
    renderMark(entry, el, { retry: () => retry(this, entry), remove: () => removePending(this, entry) });
    this.layout.marked(entry, el);
  }

  /** How notifications name this room: its fingerprint words, which everyone with the link sees. */
  roomLabel() {
    return this.fingerprint ? `“${this.fingerprint.text}”` : `Room ${shortId(this.roomId)}`;
  }

  displayName(clientId) {
    const name = this.names.get(clientId);
    return name ? `${name} (${shortId(clientId)})` : shortId(clientId);
  }

  systemLine(text, now = Date.now()) {
    const line = h("li", { class: "system" }, text, " · ", h("time", { datetime: new Date(now).toISOString() }, formatTime(now)));
    // Before any pending messages, which are still on their way.
    const firstPending = this.entries.find((entry) => entry.pending);
    this.follow.around(
      () => {
        if (firstPending) this.list.insertBefore(line, firstPending.el);
        else this.list.append(line);
        this.empty.remove();
        if (firstPending) this.layout.refresh(this.entries.indexOf(firstPending)); // the line ends its group
      },
      { quiet: true },
    );
    return line;
  }

  renderPeople() {
    this.peopleCount.textContent = String(this.participants.length);
    this.firstHint.hidden = !this.participants.length || this.participants.some((id) => id !== this.clientId);
    markPresence(this.people, this.participants.length, this.status.state === "open");
    const items = this.participants.map((id) => {
      const me = id === this.clientId;
      const name = me ? this.record.name : this.names.get(id);
      return h(
        "li",
        { class: colourClass(id) },
        h("span", { class: "swatch", "aria-hidden": "true" }),
        bdi(name || (me ? "You" : shortId(id))),
        name || me ? h("span", { class: "cid" }, " ", bdi(shortId(id))) : null,
        me && name ? h("span", { class: "you" }, " (you)") : null,
      );
    });
    replace(this.peopleList, items);
  }

  updateTitle() {
    document.title = this.unread ? `(${this.unread}) ${TITLE}` : `Chat · ${TITLE}`;
  }

  updateCounter() {
    const length = this.input.value.length;
    this.counter.textContent = `${length} / ${MAX_TEXT}`;
    this.counter.classList.toggle("near", length > MAX_TEXT * 0.9);
    // Grow with the text up to a few lines; CSS caps the height.
    this.input.style.height = "auto";
    this.input.style.height = `${this.input.scrollHeight}px`;
  }

  // ----- what the cache kept ------------------------------------------------------

  /** Cached messages (client/cache.js), shown before the server's history. */
  async showCached(entries) {
    for (const cached of entries) {
      if (this.seenIds.has(cached.id) || (cached.mid && this.byMid.has(cached.mid))) continue;
      this.seenIds.add(cached.id);
      if (cached.name) this.names.set(cached.from, cached.name);
      // Ours only if this browser sent its mid, as for what the server sends.
      const fromMe = cached.from === this.clientId;
      const mine = fromMe && !cached.unreadable && (await this.persons.isMine(cached.mid, cached.sentAt));
      this.insert({ ...cached, mine, elsewhere: fromMe && !mine }, false);
    }
    if (entries.length) this.follow.toEnd();
  }

  // ----- room actions (client/room_menu.js) ------------------------------------------

  /** Set (or with "" remove) our name, from the menu or the first-time prompt. */
  async useName(name) {
    if (name) this.record.name = cleanName(name);
    else delete this.record.name;
    delete this.record.askName; // a name chosen is the first-time question answered
    this.persons.answeredName();
    const stored = await saveRoom(this.record);
    this.persons.nameChanged();
    this.renderPeople();
    this.systemLine(name ? ["Your messages now show the name “", bdi(this.record.name), "”"] : "Your messages now show only your short id");
    if (!stored) this.notify("Your name is kept in this tab only: this browser refused to store it.");
  }

  forget() {
    return forgetRoomPage(this);
  }
}
