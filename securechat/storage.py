"""Durable room state: verifiers, history and sequence numbers.

Two implementations of one ``Storage`` protocol: ``SqliteStorage`` (the default, a
WAL-mode SQLite file under the data dir) and ``MemoryStorage`` (nothing on disk,
used by the actor tests). A room hands its writes over as one ordered batch that
is committed in a single transaction before anything in it is relayed.

What is stored, and nothing else: the room id, the SHA-256 of its access token, the
last sequence number, the time of last activity, and per message its id, sender
clientId, server time, IV and ciphertext (opaque to the server).
"""

import os
import sqlite3
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol, final

import trio

from securechat.protocol import ClientId, MessageOut, RoomId

SCHEMA_VERSION: Final = 1
DB_NAME: Final = "securechat.sqlite3"


@final
@dataclass(frozen=True, slots=True)
class RoomRecord:
    """What a room loads when it starts."""

    verifier: bytes | None
    last_id: int
    history: list[MessageOut]


@final
@dataclass(frozen=True, slots=True)
class SetVerifier:
    verifier: bytes


@final
@dataclass(frozen=True, slots=True)
class Append:
    message: MessageOut
    keep: int  # the history cap: older messages of the room are deleted


@final
@dataclass(frozen=True, slots=True)
class Clear:
    pass


Write = SetVerifier | Append | Clear


class Storage(Protocol):
    """The seam between a room and where its state lives."""

    async def load(self, room_id: RoomId) -> RoomRecord: ...

    async def load_verifier(self, room_id: RoomId) -> bytes | None: ...

    async def write(self, room_id: RoomId, writes: Sequence[Write], now_ms: int) -> None:
        """Commit ``writes`` in order, all or nothing, and mark the room active."""
        ...

    async def sweep(self, cutoff_ms: int, active: Collection[RoomId]) -> int:
        """Delete rooms inactive since before ``cutoff_ms``, except ``active``; count them."""
        ...

    def close(self) -> None: ...


_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS rooms (
    room_id     TEXT PRIMARY KEY,
    verifier    BLOB,
    last_id     INTEGER NOT NULL DEFAULT 0,
    last_active INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    room_id    TEXT NOT NULL,
    id         INTEGER NOT NULL,
    sender     TEXT NOT NULL,
    sent_at    INTEGER NOT NULL,
    iv         TEXT NOT NULL,
    ciphertext TEXT NOT NULL,
    PRIMARY KEY (room_id, id)
) WITHOUT ROWID;
"""


class StorageError(Exception):
    """The data dir cannot be used (raised at start, with a readable reason)."""


@final
class SqliteStorage:
    """SQLite in WAL mode, used from one worker thread at a time.

    Resource handling: one connection, opened here and closed by ``close()``. Every
    call runs in a worker thread behind a limiter of one, so the event loop never
    blocks on disk and the connection is never used by two threads at once. Worker
    calls are not cancellable: a write that started always finishes, so a
    cancelled caller never leaves half a batch.

    Durability: ``synchronous=NORMAL`` in WAL mode makes every commit survive a
    crash or ``kill -9`` of the server; a power loss may lose the last commits.
    """

    def __init__(self, data_dir: Path) -> None:
        try:
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = data_dir / DB_NAME
            # Created owner-only: the file holds verifiers and ciphertexts.
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise StorageError(f"{path} has schema version {version}, expected 1")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot use data dir {data_dir}: {exc}") from exc
        self._limiter = trio.CapacityLimiter(1)

    async def load(self, room_id: RoomId) -> RoomRecord:
        return await trio.to_thread.run_sync(self._load, room_id, limiter=self._limiter)

    async def load_verifier(self, room_id: RoomId) -> bytes | None:
        return (await self.load(room_id)).verifier

    async def write(self, room_id: RoomId, writes: Sequence[Write], now_ms: int) -> None:
        await trio.to_thread.run_sync(self._write, room_id, writes, now_ms, limiter=self._limiter)

    async def sweep(self, cutoff_ms: int, active: Collection[RoomId]) -> int:
        return await trio.to_thread.run_sync(self._sweep, cutoff_ms, active, limiter=self._limiter)

    def close(self) -> None:
        self._db.close()

    def _load(self, room_id: RoomId) -> RoomRecord:
        row = self._db.execute(
            "SELECT verifier, last_id FROM rooms WHERE room_id = ?", (room_id,)
        ).fetchone()
        if row is None:
            return RoomRecord(verifier=None, last_id=0, history=[])
        rows = self._db.execute(
            "SELECT id, sender, sent_at, iv, ciphertext FROM messages"
            " WHERE room_id = ? ORDER BY id",
            (room_id,),
        ).fetchall()
        history = [
            MessageOut(id=i, sender=ClientId(s), sent_at=t, iv=iv, ciphertext=ct)
            for i, s, t, iv, ct in rows
        ]
        return RoomRecord(verifier=row[0], last_id=row[1], history=history)

    def _write(self, room_id: RoomId, writes: Sequence[Write], now_ms: int) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT INTO rooms (room_id, last_active) VALUES (?, ?)"
                " ON CONFLICT (room_id) DO UPDATE SET last_active = excluded.last_active",
                (room_id, now_ms),
            )
            for write in writes:
                match write:
                    case SetVerifier(verifier=verifier):
                        db.execute(
                            "UPDATE rooms SET verifier = ? WHERE room_id = ?", (verifier, room_id)
                        )
                    case Append(message=m, keep=keep):
                        db.execute(
                            "INSERT INTO messages (room_id, id, sender, sent_at, iv, ciphertext)"
                            " VALUES (?, ?, ?, ?, ?, ?)",
                            (room_id, m.id, m.sender, m.sent_at, m.iv, m.ciphertext),
                        )
                        db.execute(
                            "UPDATE rooms SET last_id = ? WHERE room_id = ?", (m.id, room_id)
                        )
                        db.execute(
                            "DELETE FROM messages WHERE room_id = ? AND id <= ?",
                            (room_id, m.id - keep),
                        )
                    case Clear():
                        db.execute("DELETE FROM messages WHERE room_id = ?", (room_id,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _sweep(self, cutoff_ms: int, active: Collection[RoomId]) -> int:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            expired = [
                (room_id,)
                for (room_id,) in db.execute(
                    "SELECT room_id FROM rooms WHERE last_active < ?", (cutoff_ms,)
                )
                if room_id not in active
            ]
            db.executemany("DELETE FROM messages WHERE room_id = ?", expired)
            db.executemany("DELETE FROM rooms WHERE room_id = ?", expired)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return len(expired)


@final
@dataclass(slots=True)
class _MemoryRoom:
    verifier: bytes | None = None
    last_id: int = 0
    last_active: int = 0
    history: list[MessageOut] = field(default_factory=list)


@final
class MemoryStorage:
    """Keeps everything in this process: nothing on disk, all gone on restart."""

    def __init__(self) -> None:
        self._rooms: dict[RoomId, _MemoryRoom] = {}

    async def load(self, room_id: RoomId) -> RoomRecord:
        await trio.lowlevel.checkpoint()
        room = self._rooms.get(room_id, _MemoryRoom())
        return RoomRecord(verifier=room.verifier, last_id=room.last_id, history=list(room.history))

    async def load_verifier(self, room_id: RoomId) -> bytes | None:
        return (await self.load(room_id)).verifier

    async def write(self, room_id: RoomId, writes: Sequence[Write], now_ms: int) -> None:
        await trio.lowlevel.checkpoint()
        room = self._rooms.setdefault(room_id, _MemoryRoom())
        room.last_active = now_ms
        for write in writes:
            match write:
                case SetVerifier(verifier=verifier):
                    room.verifier = verifier
                case Append(message=message, keep=keep):
                    room.last_id = message.id
                    room.history = [*room.history, message][-keep:] if keep else []
                case Clear():
                    room.history = []

    async def sweep(self, cutoff_ms: int, active: Collection[RoomId]) -> int:
        await trio.lowlevel.checkpoint()
        expired = [
            r for r, room in self._rooms.items() if room.last_active < cutoff_ms and r not in active
        ]
        for room_id in expired:
            del self._rooms[room_id]
        return len(expired)

    def close(self) -> None:
        self._rooms.clear()
