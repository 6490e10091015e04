// The people side of a Room (room.js calls these hooks): names learned from
// messages and profile signals, folded joined/left lines, "You" only for what
// this browser sent, the also-connected warning, the first-time name prompt,
// and the typing indicator.

import { cleanName } from "/bidi.js";
import { MAX_NAME } from "/crypto.js";
import { OwnMessages } from "/mine.js";
import { namePrompt } from "/name_prompt.js";
import { Roster, alsoConnectedNotice } from "/people.js";
import { openSignal, profileBody, sealSignal } from "/signals.js";
import { saveRoom } from "/store.js";
import { TypingIndicator, TypingSender, typingToggle } from "/typing.js";
import { shortId } from "/ui.js";

export class RoomPeople {
  constructor(room) {
    this.room = room;
    this.roster = new Roster({ selfId: room.clientId, systemLine: (parts, at) => room.systemLine(parts, at) });
    this.own = new OwnMessages(room.record);
    this.typingSender = new TypingSender(() => this.sendSignal({ kind: "typing" }));
    this.typing = new TypingIndicator();
    this.warning = null;
    this.prompt = null;
  }

  get typingOn() {
    return this.room.record.typing !== false; // default on
  }

  /** After the page is built: the typing line, the menu's switch, maybe the name prompt. */
  attach() {
    const room = this.room;
    const composer = room.input.closest(".composer");
    composer.prepend(this.typing.el);
    const toggle = typingToggle({
      isOn: () => this.typingOn,
      set: async (on) => {
        if (on) delete room.record.typing;
        else room.record.typing = false;
        await saveRoom(room.record);
      },
    });
    const nameItem = [...room.menu.querySelectorAll(".menu-item")].find((el) => el.textContent === "Your name…");
    if (nameItem) nameItem.after(toggle);
    if (room.record.askName) this.askName(composer);
  }

  askName(composer) {
    const room = this.room;
    this.prompt = namePrompt({
      maxLength: MAX_NAME,
      done: async (name) => {
        this.prompt.el.remove();
        this.prompt = null;
        room.input.focus();
        if (name) await room.useName(name);
        else await this.answeredName();
      },
    });
    composer.before(this.prompt.el);
    this.prompt.input.focus();
  }

  /** The person chose or skipped a name: a reload does not ask again. */
  async answeredName() {
    if (this.prompt) {
      this.prompt.dismiss();
      this.prompt.el.remove();
      this.prompt = null;
    }
    if (!this.room.record.askName) return;
    delete this.room.record.askName;
    await saveRoom(this.room.record);
  }

  // ----- names ---------------------------------------------------------------------

  /** A name came with a message or a profile: redraw the people and presence lines. */
  learnName(clientId, name) {
    if (!this.roster.learn(clientId, name)) return;
    this.room.renderPeople();
    this.roster.relabel(this.room.list, clientId);
  }

  /** Our name changed (or was set for the first time). */
  nameChanged() {
    this.sendProfile();
  }

  sendProfile() {
    this.sendSignal(profileBody(this.room.record.name));
  }

  // ----- signals -------------------------------------------------------------------

  /** Seal and send a signal, in order with our messages (a typing never overtakes its message). */
  sendSignal(body) {
    const room = this.room;
    room.outbox = room.outbox
      .then(async () => {
        if (!room.connection.isOpen) return;
        room.connection.send(await sealSignal(room.record.key, room.roomId, room.clientId, body));
      })
      .catch(() => {}); // a signal that cannot be sealed is not worth a word: the next one will do
  }

  async onSignal(envelope) {
    if (envelope.from === this.room.clientId) return; // our own id: this browser knows its name
    const room = this.room;
    const signal = await openSignal(room.record.key, room.roomId, envelope.from, envelope.iv, envelope.ciphertext);
    if (!signal) return;
    if (signal.kind === "profile") {
      this.learnName(envelope.from, signal.name ? cleanName(signal.name) : null);
    } else if (signal.kind === "typing" && room.participants.includes(envelope.from)) {
      this.typing.show(envelope.from, this.roster.names.get(envelope.from) || shortId(envelope.from));
    }
  }

  // ----- presence ------------------------------------------------------------------

  /** Our own connection is in: the others learn our name before anyone speaks. */
  connected() {
    this.sendProfile();
  }

  joined(clientId) {
    if (clientId !== this.room.clientId) this.sendProfile(); // the newcomer learns names at once
    this.roster.joined(clientId);
  }

  left(clientId) {
    this.typing.stop(clientId);
    this.roster.left(clientId);
  }

  /** Another connection uses our clientId: say so, once, and keep saying it. */
  alsoConnected() {
    if (this.warning) return;
    this.warning = alsoConnectedNotice();
    this.room.notice.after(this.warning);
  }

  // ----- our messages --------------------------------------------------------------

  /** Is a message from our clientId one this browser sent? */
  async isMine(mid, sentAt) {
    return this.own.hasStored(mid, sentAt);
  }

  /** A message of `clientId` arrived: they are no longer typing it. */
  messageShown(clientId) {
    this.typing.stop(clientId);
  }

  /** The composer changed. */
  typed() {
    const last = this.room.entries[this.room.entries.length - 1]; // pending ones are last
    this.typingSender.typed(this.room.input.value, this.typingOn, Boolean(last?.pending));
  }

  /** Our new message: remember its mid (before it goes out). */
  sending(entry) {
    if (this.room.record.askName) delete this.room.record.askName; // chatting without a name is an answer too
    const own = this.own;
    this.room.outbox = this.room.outbox.then(() => own.add(entry.mid)).catch(() => {});
  }
}
