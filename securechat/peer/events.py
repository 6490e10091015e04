"""What a session reports to its user: one frozen record per thing that happened."""

from dataclasses import dataclass
from typing import Literal, final

from securechat.protocol import ClientId


@final
@dataclass(frozen=True, slots=True)
class ChatMessage:
    """A message that decrypted. ``own`` is True for our clientId (the echo)."""

    id: int  # the server's sequence number in the room
    sender: ClientId
    sent_at: int  # server time, ms since the epoch
    text: str
    mid: str
    ts: int  # the sender's clock, ms since the epoch
    name: str | None
    own: bool
    from_history: bool


@final
@dataclass(frozen=True, slots=True)
class Unreadable:
    """A message that did not decrypt (another key, tampering, or garbage)."""

    id: int
    sender: ClientId
    sent_at: int
    from_history: bool


@final
@dataclass(frozen=True, slots=True)
class Presence:
    """Someone came or went; ``connected`` is us, after every (re)connect.

    ``also_connected``: another connection joined under our clientId (the same id
    used in another terminal or browser tab); the participants are unchanged.
    """

    event: Literal["connected", "joined", "left", "also_connected"]
    client_id: ClientId
    participants: tuple[ClientId, ...]


@final
@dataclass(frozen=True, slots=True)
class Profile:
    """``client_id`` said who it is in a signal: its display name, or None for none.

    Signals are never stored, so this comes only live: when someone connects,
    when we do, and when a name changes.
    """

    client_id: ClientId
    name: str | None


@final
@dataclass(frozen=True, slots=True)
class Cleared:
    """The room's history was cleared by ``by``."""

    by: ClientId


@final
@dataclass(frozen=True, slots=True)
class ServerError:
    """The server dropped one of our frames and said why (``rate_limited``, ...)."""

    code: str
    message: str


@final
@dataclass(frozen=True, slots=True)
class Challenged:
    """The room is new and the server is busy: a proof of work is due before joining.

    The session solves it by itself and says hello again; ``bits`` is its difficulty
    (about 2**bits hashes).
    """

    challenge: bytes
    bits: int


@final
@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection was lost; the session tries again in ``retry_in`` seconds."""

    code: int | None  # the WebSocket close code, None if there was no close frame
    reason: str
    retry_in: float


@final
@dataclass(frozen=True, slots=True)
class Stopped:
    """The session ended for good; the events channel closes after this.

    ``code`` is the close code (4401, 4409, ...) or None; ``reason`` is a one-line
    message for a person.
    """

    code: int | None
    reason: str


Event = (
    ChatMessage
    | Unreadable
    | Presence
    | Profile
    | Cleared
    | ServerError
    | Challenged
    | Disconnected
    | Stopped
)
