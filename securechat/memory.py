"""``MemoryStorage``: the rooms in this process only, under the same quota as on disk."""

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import final

import trio

from securechat.protocol import ClientId, MessageOut, RoomId
from securechat.storage import (
    Append,
    Clear,
    Confirm,
    Quota,
    Retention,
    RoomMeta,
    RoomRecord,
    SetVerifier,
    Touch,
    Write,
    message_bytes,
    room_bytes,
)


@final
@dataclass(slots=True)
class _MemoryRoom:
    last_active: int
    verifier: bytes | None = None
    last_id: int = 0
    creator: ClientId | None = None
    confirmed_at: int | None = None
    swept_at: int | None = None
    history: list[MessageOut] = field(default_factory=list)


@final
class MemoryStorage:
    """Keeps everything in this process: nothing on disk, all gone on restart.

    The same rules as ``SqliteStorage``, byte for byte in the quota's counts, so
    ``--ephemeral`` is bounded by ``--max-storage-mb`` in RAM as the disk is.
    """

    def __init__(self, quota: Quota | None = None) -> None:
        self._quota = quota or Quota.unlimited()
        self._rooms: dict[RoomId, _MemoryRoom] = {}

    @property
    def quota(self) -> Quota:
        return self._quota

    async def load_meta(self, room_id: RoomId) -> RoomMeta | None:
        await trio.lowlevel.checkpoint()
        room = self._rooms.get(room_id)
        if room is None or room.verifier is None:
            return None
        return RoomMeta(
            room.verifier, confirmed=room.confirmed_at is not None, swept=room.swept_at is not None
        )

    async def load(self, room_id: RoomId) -> RoomRecord:
        await trio.lowlevel.checkpoint()
        room = self._rooms.get(room_id)
        if room is None:
            return RoomRecord()
        return RoomRecord(
            verifier=room.verifier,
            last_id=room.last_id,
            last_active=room.last_active,
            creator=room.creator,
            confirmed=room.confirmed_at is not None,
            swept=room.swept_at is not None,
            sizes=tuple(message_bytes(m) for m in room.history),
        )

    async def load_history(self, room_id: RoomId) -> list[MessageOut]:
        await trio.lowlevel.checkpoint()
        room = self._rooms.get(room_id)
        return [] if room is None else list(room.history)

    async def write(self, room_id: RoomId, writes: Sequence[Write], now_ms: int) -> None:
        await trio.lowlevel.checkpoint()
        room = self._rooms.get(room_id)
        if room is None:
            room = self._rooms[room_id] = _MemoryRoom(last_active=now_ms)
            self._quota.stored_rooms += 1
            self._quota.stored_bytes += room_bytes(room_id)
        room.last_active = now_ms
        room.swept_at = None
        grown = 0  # counted from what each write adds and drops, not the whole history
        for write in writes:
            match write:
                case SetVerifier(verifier=verifier, creator=creator):
                    room.verifier, room.creator = verifier, creator
                case Confirm():
                    room.confirmed_at, room.creator = now_ms, None
                case Touch():
                    pass
                case Append(message=message, keep=keep):
                    room.last_id = message.id
                    history = [*room.history, message]
                    cut = max(0, len(history) - keep) if keep else len(history)
                    grown += message_bytes(message) - sum(map(message_bytes, history[:cut]))
                    room.history = history[cut:]
                case Clear():
                    grown -= sum(map(message_bytes, room.history))
                    room.history = []
        self._quota.stored_bytes += grown

    async def sweep(self, now_ms: int, retention: Retention, active: Collection[RoomId]) -> int:
        await trio.lowlevel.checkpoint()
        removed = 0
        for room_id, room in list(self._rooms.items()):
            if room_id in active or not _expired(room, now_ms, retention):
                continue
            removed += 1
            self._quota.stored_bytes -= sum(map(message_bytes, room.history))
            room.history = []
            if room.swept_at is None and room.confirmed_at is not None:
                room.swept_at, room.creator = now_ms, None  # a tombstone
            else:
                del self._rooms[room_id]
                self._quota.stored_rooms -= 1
                self._quota.stored_bytes -= room_bytes(room_id)
        return removed

    async def answers(self, seconds: float) -> bool:
        """Always: nothing here waits for a disk (``SqliteStorage.answers``)."""
        await trio.lowlevel.checkpoint()
        return True

    def close(self) -> None:
        self._rooms.clear()


def _expired(room: _MemoryRoom, now_ms: int, retention: Retention) -> bool:
    if room.swept_at is not None:
        return room.swept_at < now_ms - retention.tombstone_ms
    kept = retention.unconfirmed_ms if room.confirmed_at is None else retention.confirmed_ms
    return kept is not None and room.last_active < now_ms - kept
