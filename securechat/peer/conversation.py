"""The client's rules, without I/O: server frames in, events and frames out.

``Conversation`` decrypts, dedupes by ``mid`` (and by ``id`` for messages that do
not decrypt), orders a history batch by ``id``, and keeps our own messages pending
until the server echoes them; it opens signals and reports profiles. It never
blocks and never raises on server input; the session around it owns the socket,
the clock and the retries.
"""

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final, final

import msgspec

from securechat.peer.b64 import b64url_decode, b64url_encode
from securechat.peer.events import (
    Challenged,
    ChatMessage,
    Cleared,
    Event,
    Presence,
    Profile,
    ServerError,
    Unreadable,
)
from securechat.peer.keys import (
    PROFILE,
    Plaintext,
    RoomKeys,
    SignalBody,
    check_outgoing,
    new_mid,
)
from securechat.peer.pow import MAX_CHALLENGE_BITS
from securechat.protocol import (
    Challenge,
    ClientId,
    Error,
    History,
    HistoryCleared,
    MessageOut,
    ServerMessage,
    SignalOut,
    System,
    decode_server,
)

SEEN_LIMIT: Final = 10_000  # ids and mids remembered for dedupe: far past any history cap
MAX_PENDING: Final = 100  # our messages awaiting their echo; more is a stuck connection
_encoder: Final = msgspec.json.Encoder()


@final
class _Recent:
    """A set that forgets its oldest entries past ``limit``."""

    def __init__(self, limit: int) -> None:
        self._items: OrderedDict[object, None] = OrderedDict()
        self._limit = limit

    def add(self, item: object) -> bool:
        """Add ``item``; False if it was already there."""
        if item in self._items:
            return False
        self._items[item] = None
        if len(self._items) > self._limit:
            self._items.popitem(last=False)
        return True


@final
class Conversation:
    """One client's view of one room, across reconnects.

    Args:
        keys: the room's keys.
        client_id: who we are; the additional data of what we send.
        name: the display name put in our messages, or None.
        clock: milliseconds since the epoch, for the plaintext's ``ts``.
    """

    def __init__(
        self,
        keys: RoomKeys,
        client_id: ClientId,
        name: str | None = None,
        clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        if name is not None:
            check_outgoing("-", name)
        self.keys: Final = keys
        self.client_id: Final = client_id
        self.name: Final = name
        self._clock = clock
        self._seen = _Recent(SEEN_LIMIT)
        self._pending: dict[str, Plaintext] = {}
        self.participants: tuple[ClientId, ...] = ()

    def hello(self, proof: bytes | None = None) -> str:
        """The first frame of every connection; again with ``proof`` after a challenge."""
        envelope = {"type": "hello", "auth": self.keys.auth}
        if proof is not None:
            envelope["proof"] = b64url_encode(proof)
        return _encoder.encode(envelope).decode()

    def compose(self, text: str) -> tuple[str, str]:
        """Encrypt ``text`` as a new message; return its ``mid`` and the frame to send.

        The message stays pending until its echo arrives (see ``resend_frames``).

        Error handling: raises ``ValueError`` for an empty or over-long text, or when
        too many messages are still waiting for their echo.
        """
        check_outgoing(text, self.name)
        if len(self._pending) >= MAX_PENDING:
            raise ValueError("too many messages are waiting for the server: not sent")
        plaintext = Plaintext(text=text, mid=new_mid(), ts=self._clock(), name=self.name)
        self._pending[plaintext.mid] = plaintext
        return plaintext.mid, self._frame(plaintext)

    def clear_frame(self) -> str:
        return '{"type":"clear_history"}'

    def resend_frames(self) -> list[str]:
        """Frames for every message not yet echoed, freshly encrypted (a new IV each).

        Sending one twice is harmless: every receiver dedupes by ``mid``. Call it
        once the history of a new connection has been read, so that what the
        server already has is not sent again.
        """
        return [self._frame(plaintext) for plaintext in self._pending.values()]

    @property
    def pending(self) -> int:
        """How many of our messages await their echo."""
        return len(self._pending)

    def receive(self, frame: str | bytes) -> list[Event]:
        """Turn one server frame into the events to report (maybe none).

        Error handling: a frame that is not a server envelope is ignored (the
        server is not trusted to be well-behaved, but it cannot crash us).
        """
        try:
            envelope: ServerMessage = decode_server(frame)
        except msgspec.DecodeError:
            return []
        match envelope:
            case History(messages=messages):
                ordered = sorted(messages, key=lambda m: m.id)
                return [e for m in ordered if (e := self._message(m, True)) is not None]
            case MessageOut():
                event = self._message(envelope, False)
                return [] if event is None else [event]
            case System(event=kind, client_id=client_id, participants=participants):
                self.participants = tuple(participants)
                if kind == "cleared":
                    return []  # ``history_cleared`` already said it
                return [Presence(kind, client_id, self.participants)]
            case HistoryCleared(by=by):
                return [Cleared(by)]
            case Error(code=code, message=message):
                return [ServerError(code, message)]
            case Challenge(challenge=challenge, bits=bits):
                return [_challenged(challenge, bits)]
            case SignalOut(sender=sender, iv=iv, ciphertext=ciphertext):
                return self._signal(sender, iv, ciphertext)

    def profile_frame(self) -> str:
        """A ``profile`` signal saying who we are: our name, or no name."""
        return self._signal_frame(SignalBody(kind=PROFILE, name=self.name))

    def _signal(self, sender: ClientId, iv: str, ciphertext: str) -> list[Event]:
        """A ``profile`` becomes an event; other kinds (``typing``) and signals that
        do not open are dropped without a word, as docs/protocol.md asks."""
        body = self.keys.open_signal(iv, ciphertext, sender)
        if body is None or body.kind != PROFILE:
            return []
        return [Profile(sender, body.name or None)]

    def _message(self, envelope: MessageOut, from_history: bool) -> Event | None:
        if not self._seen.add(("id", envelope.id)):
            return None
        plaintext = self.keys.open(envelope.iv, envelope.ciphertext, envelope.sender)
        if plaintext is None:
            return Unreadable(envelope.id, envelope.sender, envelope.sent_at, from_history)
        own = envelope.sender == self.client_id
        if own:
            self._pending.pop(plaintext.mid, None)
        if not self._seen.add(("mid", plaintext.mid)):
            return None
        return ChatMessage(
            id=envelope.id,
            sender=envelope.sender,
            sent_at=envelope.sent_at,
            text=plaintext.text,
            mid=plaintext.mid,
            ts=plaintext.ts,
            name=plaintext.name,
            own=own,
            from_history=from_history,
        )

    def _frame(self, plaintext: Plaintext) -> str:
        sealed = self.keys.seal(plaintext, self.client_id)
        envelope = {"type": "message", "iv": sealed.iv, "ciphertext": sealed.ciphertext}
        return _encoder.encode(envelope).decode()

    def _signal_frame(self, body: SignalBody) -> str:
        sealed = self.keys.seal_signal(body, self.client_id)
        envelope = {"type": "signal", "iv": sealed.iv, "ciphertext": sealed.ciphertext}
        return _encoder.encode(envelope).decode()


def _challenged(challenge: str, bits: int) -> Event:
    """A challenge to solve, or an error for one no client should try."""
    try:
        raw = b64url_decode(challenge)
    except ValueError:
        raw = b""
    if not raw or not 0 <= bits <= MAX_CHALLENGE_BITS:
        return ServerError("bad_challenge", f"a challenge this client will not solve ({bits} bits)")
    return Challenged(raw, bits)
