"""How events look in a terminal and in ``tail``'s JSON lines.

Everything a peer or the server wrote passes through ``clean`` before it
reaches a terminal: a message, a clientId (the server relays whatever it likes
as ``from``, ``participants`` or ``by``), a close reason. It could otherwise carry
escape sequences that rewrite the screen, retitle the window or hide text
(bidirectional overrides). ``tail``'s JSON lines escape the same characters.
"""

import json
import re
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Final, final

from securechat.peer.bounds import MAX_NAME_CHARS
from securechat.peer.events import (
    Challenged,
    ChatMessage,
    Cleared,
    Disconnected,
    Event,
    Presence,
    Profile,
    ServerError,
    Stopped,
    Unreadable,
)

# C0 and C1 controls but newline and tab, DEL, and the bidi embeddings and isolates.
_UNSAFE: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
UNREADABLE_TEXT: Final = "[a message that could not be decrypted]"
ALSO_CONNECTED: Final = "your id is also connected elsewhere"
MAX_KNOWN_NAMES: Final = 1_000  # names remembered by clientId: far past a room's participants


def clean(text: str) -> str:
    """``text`` with every terminal control character replaced by U+FFFD."""
    return _UNSAFE.sub("\ufffd", text.replace("\t", " "))


def when(ms: int, now: float | None = None) -> str:
    """A local time: ``14:03``, with the date if it is not today."""
    moment = time.localtime(ms / 1000)
    today = time.localtime(time.time() if now is None else now)
    if moment[:3] == today[:3]:
        return time.strftime("%H:%M", moment)
    return time.strftime("%Y-%m-%d %H:%M", moment)


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def who(sender: str, name: str | None, own: bool = False) -> str:
    sender = clean(sender)
    label = f"{clean(name[:MAX_NAME_CHARS])} ({sender})" if name else sender
    return f"{label} (you)" if own else label


@final
class People:
    """Who is who in one room, for lines about them: ``Alice (a1b2c3) (you)``.

    A name is learnt from the last message or profile signal each clientId sent
    (it is what that peer calls itself; a peer cannot sign as another clientId,
    the additional data binds the sender). A profile without a name forgets it.
    Ours is the one we were given.
    """

    def __init__(self, me: str, name: str | None = None) -> None:
        self.me: Final = me
        self._names: OrderedDict[str, str] = OrderedDict()
        if name:
            self._names[me] = name

    def learn(self, event: Event) -> None:
        match event:
            case ChatMessage(sender=sender, name=name) if name and sender != self.me:
                self._remember(sender, name)
            case Profile(client_id=client_id, name=name) if client_id != self.me:
                if name:
                    self._remember(client_id, name)
                else:
                    self._names.pop(client_id, None)
            case _:
                pass

    def _remember(self, client_id: str, name: str) -> None:
        self._names[client_id] = name
        self._names.move_to_end(client_id)
        if len(self._names) > MAX_KNOWN_NAMES:
            self._names.popitem(last=False)

    def name(self, client_id: str) -> str | None:
        """The name ``client_id`` last gave itself, if any (not cleaned)."""
        return self._names.get(client_id)

    def label(self, client_id: str) -> str:
        return who(client_id, self._names.get(client_id), client_id == self.me)

    def labels(self, client_ids: Iterable[str]) -> str:
        """Cleaned, named and marked: the server supplies the ids."""
        return ", ".join(self.label(client_id) for client_id in client_ids)


def names(client_ids: Iterable[str]) -> str:
    """Client ids for a line, cleaned: the server supplies them."""
    return ", ".join(clean(client_id) for client_id in client_ids)


def line(event: Event, me: str, people: People | None = None) -> str | None:
    """The chat line for ``event``, or None for events the chat does not show.

    With ``people``, clientIds in presence and clear lines carry their names.
    """
    people = people or People(me)
    match event:
        case ChatMessage():
            body = clean(event.text).replace("\n", "\n    ")
            name = event.name or people.name(event.sender)
            return f"[{when(event.sent_at)}] {who(event.sender, name, event.own)}: {body}"
        case Unreadable():
            return f"[{when(event.sent_at)}] {clean(event.sender)}: {UNREADABLE_TEXT}"
        case Presence(event="connected", participants=participants):
            others = [p for p in participants if p != me]
            here = people.labels(others) if others else "nobody else yet"
            return f"* connected as {me}; here: {here}"
        case Presence(event="joined", client_id=client_id):
            return f"* {people.label(client_id)} joined"
        case Presence(event="left", client_id=client_id):
            return f"* {people.label(client_id)} left"
        case Presence(event="also_connected"):
            return f"* {ALSO_CONNECTED}"
        case Cleared(by=by):
            return f"* the history was cleared by {people.label(by)}"
        case ServerError(code=code, message=message):
            return f"! the server dropped a frame: {clean(message)} ({clean(code)})"
        case Disconnected(reason=reason, retry_in=retry_in):
            return f"! {clean(reason)}; reconnecting in {retry_in:.1f} s"
        case Challenged() | Stopped() | Profile():
            return None  # a profile shows in the lines about that person
    return None


def json_line(message: ChatMessage, known_name: str | None = None) -> str:
    """``{"id","from","sentAt","name","text"}`` on one line (newlines escaped).

    ``name`` is the message's own, else ``known_name`` (from the sender's profile).

    JSON escapes C0 controls itself; the other characters ``clean`` replaces are
    escaped too (``\\u009b``), so the line is safe on a terminal and loses nothing.
    """
    record = {
        "id": message.id,
        "from": message.sender,
        "sentAt": message.sent_at,
        "name": message.name or known_name,
        "text": message.text,
    }
    return _UNSAFE.sub(_escape, json.dumps(record, ensure_ascii=False))
