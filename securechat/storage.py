"""Durable room state: the ``Storage`` protocol, its records and writes, and the quota.

Two implementations: ``sqlite.SqliteStorage`` (the default, a WAL-mode SQLite file
under the data dir) and ``memory.MemoryStorage`` (nothing on disk, for
``--ephemeral`` and the actor tests). A room hands its writes over as one ordered
batch that is committed in a single transaction before anything in it is relayed.

What is stored, and nothing else: the room id, the SHA-256 of its access token, the
last sequence number, the time of last activity, the clientId of its first member
until a second one joins, when that happened, when the room's history was deleted
for inactivity (a tombstone), and per message its id, sender clientId, server time,
IV and ciphertext (opaque to the server).

Sizes: every stored byte is counted as it is written and deleted (``Quota``), never
by a scan per write; the counts are rebuilt from the data when storage opens.
"""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, final

from securechat.protocol import ClientId, MessageOut, RoomId

# What a row costs beyond its strings: keys, integers and SQLite's cell header, roughly.
# Counted as stored bytes so that many tiny messages or empty rooms cannot slip under
# the quota for free.
MESSAGE_OVERHEAD_BYTES: Final = 48  # id, sent_at, room_id key of one message row
ROOM_OVERHEAD_BYTES: Final = 96  # verifier (32), last_id, times, creator of one room row


def stored_bytes(sender: ClientId, iv: str, ciphertext: str) -> int:
    """The stored bytes one message counts for (its strings are ASCII: chars = bytes)."""
    return len(iv) + len(ciphertext) + len(sender) + MESSAGE_OVERHEAD_BYTES


def message_bytes(message: MessageOut) -> int:
    return stored_bytes(message.sender, message.iv, message.ciphertext)


def room_bytes(room_id: RoomId) -> int:
    """The stored bytes a room's own row counts for, with or without messages."""
    return len(room_id) + ROOM_OVERHEAD_BYTES


@final
@dataclass(frozen=True, slots=True)
class RoomMeta:
    """What storage knows of a room id before its room starts (``Storage.load_meta``)."""

    verifier: bytes
    confirmed: bool  # a second clientId has joined it at some time
    swept: bool  # a tombstone: the history went for inactivity, the verifier stays


@final
@dataclass(frozen=True, slots=True)
class RoomRecord:
    """What a room loads when it starts: its state and message sizes, not the messages."""

    verifier: bytes | None = None
    last_id: int = 0
    last_active: int = 0  # ms
    creator: ClientId | None = None  # the first clientId, until a second one joins
    confirmed: bool = False
    swept: bool = False
    sizes: tuple[int, ...] = ()  # ``message_bytes`` of each stored message, oldest first


@final
@dataclass(frozen=True, slots=True)
class SetVerifier:
    verifier: bytes
    creator: ClientId | None = None


@final
@dataclass(frozen=True, slots=True)
class Append:
    message: MessageOut
    keep: int  # messages of the room kept, this one included: older ones are deleted


@final
@dataclass(frozen=True, slots=True)
class Clear:
    pass


@final
@dataclass(frozen=True, slots=True)
class Confirm:
    """A second clientId has joined: the room is in use, not a probe."""


@final
@dataclass(frozen=True, slots=True)
class Touch:
    """Nothing but the mark every write makes: the room is active (and no tombstone)."""


Write = SetVerifier | Append | Clear | Confirm | Touch


@final
class Quota:
    """Stored bytes and rooms against their limits.

    Only the storage changes the counts, as it commits; rooms and the registry read
    them (same thread, so every read sees whole commits).
    """

    __slots__ = ("max_bytes", "max_rooms", "reserve_bytes", "stored_bytes", "stored_rooms")

    def __init__(self, max_bytes: int, max_rooms: int, reserve_bytes: int = 0) -> None:
        self.max_bytes = max_bytes
        self.max_rooms = max_rooms
        # Rooms at the quota keep the total just under it, so "full" for a new room
        # means: less left than one maximal message would take.
        self.reserve_bytes = reserve_bytes
        self.stored_bytes = 0
        self.stored_rooms = 0  # tombstones included: each is a row

    @classmethod
    def unlimited(cls) -> "Quota":
        return cls(max_bytes=2**62, max_rooms=2**62)

    def rooms_full(self) -> bool:
        """Whether a new room must be refused (4507)."""
        return (
            self.stored_rooms >= self.max_rooms
            or self.stored_bytes + self.reserve_bytes >= self.max_bytes
        )

    def bytes_full(self, pending: int = 0) -> bool:
        """Whether storage is at its byte limit, counting ``pending`` bytes not yet committed."""
        return self.stored_bytes + pending >= self.max_bytes


@final
@dataclass(frozen=True, slots=True)
class Retention:
    """How long rooms are kept after their last activity, in ms (None: for ever)."""

    confirmed_ms: int | None  # rooms a second clientId has joined: then a tombstone
    unconfirmed_ms: int | None  # rooms only their creator used: deleted outright
    tombstone_ms: int  # how long a swept room's verifier is kept


class Storage(Protocol):
    """The seam between a room and where its state lives."""

    @property
    def quota(self) -> Quota: ...

    async def load_meta(self, room_id: RoomId) -> RoomMeta | None:
        """Whether ``room_id`` exists (a room or a tombstone), in one cheap read."""
        ...

    async def load(self, room_id: RoomId) -> RoomRecord: ...

    async def load_history(self, room_id: RoomId) -> list[MessageOut]:
        """The room's committed messages, oldest first, as of the last commit."""
        ...

    async def write(self, room_id: RoomId, writes: Sequence[Write], now_ms: int) -> None:
        """Commit ``writes`` in order, all or nothing, and mark the room active."""
        ...

    async def sweep(self, now_ms: int, retention: Retention, active: Collection[RoomId]) -> int:
        """Delete the history of rooms inactive past ``retention``, except ``active``; count them.

        A confirmed room leaves a tombstone (its verifier); an unconfirmed one, or a
        tombstone past its time, goes entirely. ``active`` may be a live view: a room
        that starts while the sweep runs is spared.
        """
        ...

    def close(self) -> None: ...


class Readiness(Protocol):
    """Whether a storage answers: ``GET /readyz`` (``SqliteStorage``, ``MemoryStorage``)."""

    async def answers(self, seconds: float) -> bool:
        """Whether a cheap read comes back within ``seconds`` (never raises)."""
        ...


class StorageError(Exception):
    """The data dir cannot be used (raised at start, with a readable reason)."""


class StorageUnavailable(Exception):
    """Storage cannot be reached now (Valkey is down): refuse with 1013, try again later."""
