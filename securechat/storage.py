"""Durable room state: verifiers, history and sequence numbers.

Two implementations of one ``Storage`` protocol: ``SqliteStorage`` (the default, a
WAL-mode SQLite file under the data dir) and ``MemoryStorage`` (nothing on disk,
used by the actor tests). A room hands its writes over as one ordered batch that
is committed in a single transaction before anything in it is relayed.

What is stored, and nothing else: the room id, the SHA-256 of its access token, the
last sequence number, the time of last activity, and per message its id, sender
clientId, server time, IV and ciphertext (opaque to the server).
"""

import contextlib
import functools
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol, TypeVar, final

import outcome
import trio

from securechat.protocol import ClientId, MessageOut, RoomId

SCHEMA_VERSION: Final = 1
GROUP_MAX: Final = 512  # calls taken into one transaction; bounds one commit's latency

T = TypeVar("T")
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
@dataclass(slots=True)
class _Request:
    """One call handed to the storage thread, and how to wake its caller."""

    run: Callable[[], object]
    token: trio.lowlevel.TrioToken
    done: trio.Event
    is_write: bool
    result: outcome.Outcome[object] | None = None


@final
class SqliteStorage:
    """SQLite in WAL mode, owned by one storage thread that commits in groups.

    Resource handling: one connection and one thread, both made here; ``close()``
    stops the thread (waiting for the calls already queued) and closes the
    connection. The event loop never touches the disk: every call is queued to
    the thread and awaited. Calls are not cancellable once queued: a write that
    was handed over always finishes, so a cancelled caller never leaves half a
    batch.

    Group commit: the thread takes every call waiting in its queue and commits
    all the writes among them in one transaction (each room's batch keeps its
    order). If that transaction fails, each write is retried alone, so one bad
    batch fails only its own caller.

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
        # From here on only the storage thread uses the connection.
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="securechat-storage", daemon=True)
        self._thread.start()

    async def load(self, room_id: RoomId) -> RoomRecord:
        return await self._call(functools.partial(self._load, room_id), RoomRecord)

    async def load_verifier(self, room_id: RoomId) -> bytes | None:
        return (await self.load(room_id)).verifier

    async def write(self, room_id: RoomId, writes: Sequence[Write], now_ms: int) -> None:
        await self._call(functools.partial(self._write, room_id, writes, now_ms), type(None), True)

    async def sweep(self, cutoff_ms: int, active: Collection[RoomId]) -> int:
        return await self._call(functools.partial(self._sweep, cutoff_ms, active), int)

    def close(self) -> None:
        """Finish the queued calls, stop the thread, close the database (blocks briefly)."""
        self._queue.put(None)
        self._thread.join()
        self._db.close()

    async def _call(self, run: Callable[[], T], kind: type[T], is_write: bool = False) -> T:
        request = _Request(run, trio.lowlevel.current_trio_token(), trio.Event(), is_write)
        self._queue.put(request)
        with trio.CancelScope(shield=True):
            # Shielded: the work happens whether or not we wait, and a caller
            # that stopped waiting would lose the error of a failed write.
            await request.done.wait()
        assert request.result is not None  # noqa: S101  (set before done)
        value = request.result.unwrap()
        assert isinstance(value, kind)  # noqa: S101  (each run returns its kind)
        return value

    # ----- the storage thread -----------------------------------------------------

    def _serve(self) -> None:
        while (first := self._queue.get()) is not None:
            batch = [first]
            stop = False
            while len(batch) < GROUP_MAX:
                try:
                    request = self._queue.get_nowait()
                except queue.Empty:
                    break
                if request is None:
                    stop = True
                    break
                batch.append(request)
            self._run_group([r for r in batch if r.is_write])
            for request in batch:
                if not request.is_write:
                    request.result = outcome.capture(request.run)
            for request in batch:
                with contextlib.suppress(trio.RunFinishedError):
                    request.token.run_sync_soon(request.done.set)
            if stop:
                break

    def _run_group(self, writes: list[_Request]) -> None:
        if not writes:
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for request in writes:
                request.run()
            db.execute("COMMIT")
        except Exception:  # noqa: BLE001  (any failure: retry each write on its own)
            db.execute("ROLLBACK")
            for request in writes:
                request.result = outcome.capture(self._in_transaction, request.run)
        else:
            for request in writes:
                request.result = outcome.Value(None)

    def _in_transaction(self, run: Callable[[], object]) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            run()
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

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
        """Apply one room's batch inside the current transaction."""
        db = self._db
        db.execute(
            "INSERT INTO rooms (room_id, last_active) VALUES (?, ?)"
            " ON CONFLICT (room_id) DO UPDATE SET last_active = excluded.last_active",
            (room_id, now_ms),
        )
        last: Append | None = None
        for write in writes:
            match write:
                case SetVerifier(verifier=verifier):
                    db.execute(
                        "UPDATE rooms SET verifier = ? WHERE room_id = ?", (verifier, room_id)
                    )
                case Append(message=m):
                    db.execute(
                        "INSERT INTO messages (room_id, id, sender, sent_at, iv, ciphertext)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (room_id, m.id, m.sender, m.sent_at, m.iv, m.ciphertext),
                    )
                    last = write
                case Clear():
                    db.execute("DELETE FROM messages WHERE room_id = ?", (room_id,))
        if last is not None:
            # Once per batch: the newest id, and the cap applied from it.
            newest = last.message.id
            db.execute("UPDATE rooms SET last_id = ? WHERE room_id = ?", (newest, room_id))
            db.execute(
                "DELETE FROM messages WHERE room_id = ? AND id <= ?", (room_id, newest - last.keep)
            )

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
