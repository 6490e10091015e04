"""Durable room state: verifiers, history and sequence numbers.

Two implementations of one ``Storage`` protocol: ``SqliteStorage`` (the default, a
WAL-mode SQLite file under the data dir) and ``MemoryStorage`` (nothing on disk,
for ``--ephemeral`` and the actor tests). A room hands its writes over as one
ordered batch that is committed in a single transaction before anything in it is
relayed.

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
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol, TypeVar, final

import outcome
import trio

from securechat.protocol import ClientId, MessageOut, RoomId

SCHEMA_VERSION: Final = 1
CHECKPOINT_COMMITS: Final = 500  # about SQLite's own 1,000 WAL pages between checkpoints
CHECKPOINT: Final = "PRAGMA wal_checkpoint(PASSIVE)"  # never waits for, nor blocks, a commit
SWEEP_CHUNK: Final = 500  # expired rooms deleted per transaction, so no sweep stalls the loop

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
        """Delete rooms inactive since before ``cutoff_ms``, except ``active``; count them.

        ``active`` may be a live view: a room that starts while the sweep runs is spared.
        """
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
    """One call handed to the storage thread, and how to wake its caller (if one waits)."""

    run: Callable[[], object]
    token: trio.lowlevel.TrioToken | None = None
    done: trio.Event | None = None
    result: outcome.Outcome[object] | None = None


def _open(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


@final
class SqliteStorage:
    """SQLite in WAL mode: commits on the event loop, disk waits on one storage thread.

    Why commits run on the event loop: with ``synchronous=NORMAL`` a WAL commit is
    a few writes into the OS page cache and no fsync, some 30 µs. Handing it to a
    thread and back cost more than that: about 100 µs of CPU per round trip on
    the 2-core benchmark machine, and tens of milliseconds of p99 latency once
    the cores were busy. So a room's batch is committed right here, in one
    transaction, before anything in it is relayed; a commit cannot be cancelled
    halfway, and each room's batch fails or succeeds alone.

    What does wait for the disk runs on the storage thread, with a connection of
    its own: loading a room (its pages may not be cached) and the checkpoints
    that copy the WAL into the database file and fsync both. The event loop's
    connection never checkpoints (``wal_autocheckpoint=0``); it asks the thread
    for a passive checkpoint every ``CHECKPOINT_COMMITS`` commits, which runs
    beside later commits without blocking them.

    Resource handling: two connections and one thread, all made here; ``close()``
    stops the thread (after the calls already queued), checkpoints what is left
    and closes both connections.

    Durability: every commit survives a crash or ``kill -9`` of the server; a
    power loss may lose the last commits (``synchronous=NORMAL`` in WAL mode).
    """

    def __init__(self, data_dir: Path) -> None:
        try:
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = data_dir / DB_NAME
            # Created owner-only: the file holds verifiers and ciphertexts.
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            self._db = _open(path)
            # Never wait for a lock on the event loop: this is the only writer.
            self._db.execute("PRAGMA busy_timeout=0")
            self._db.execute("PRAGMA wal_autocheckpoint=0")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise StorageError(f"{path} has schema version {version}, expected 1")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._disk = _open(path)  # the storage thread's
            self._disk.execute("PRAGMA busy_timeout=5000")
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot use data dir {data_dir}: {exc}") from exc
        self._commits = 0
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="securechat-storage", daemon=True)
        self._thread.start()

    async def load(self, room_id: RoomId) -> RoomRecord:
        return await self._call(functools.partial(self._load, room_id), RoomRecord)

    async def load_verifier(self, room_id: RoomId) -> bytes | None:
        return (await self.load(room_id)).verifier

    async def write(self, room_id: RoomId, writes: Sequence[Write], now_ms: int) -> None:
        with self._transaction():
            self._write(room_id, writes, now_ms)
        self._commits += 1
        if self._commits % CHECKPOINT_COMMITS == 0:
            self._queue.put(_Request(functools.partial(self._disk.execute, CHECKPOINT)))
        await trio.lowlevel.checkpoint()

    async def sweep(self, cutoff_ms: int, active: Collection[RoomId]) -> int:
        # Finding them reads the whole rooms table: the storage thread does that.
        expired = await self._call(functools.partial(self._expired, cutoff_ms), list)
        removed = 0
        for start in range(0, len(expired), SWEEP_CHUNK):
            # ``active`` is read again for every chunk: a room that started since
            # the query keeps its state. Nothing awaits within a chunk, so no room
            # can start between the check and the delete.
            chunk = [(r,) for r in expired[start : start + SWEEP_CHUNK] if r not in active]
            with self._transaction():
                self._db.executemany("DELETE FROM messages WHERE room_id = ?", chunk)
                self._db.executemany("DELETE FROM rooms WHERE room_id = ?", chunk)
            removed += len(chunk)
            await trio.lowlevel.checkpoint()
        return removed

    def close(self) -> None:
        """Finish the queued calls, stop the thread, checkpoint, close (blocks briefly)."""
        self._queue.put(None)
        self._thread.join()
        self._disk.close()
        self._db.close()  # the last connection to close checkpoints the WAL away

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    async def _call(self, run: Callable[[], T], kind: type[T]) -> T:
        request = _Request(run, trio.lowlevel.current_trio_token(), trio.Event())
        self._queue.put(request)
        assert request.done is not None  # noqa: S101  (made just above)
        with trio.CancelScope(shield=True):
            # Shielded: the call runs whether or not we wait, and is short.
            await request.done.wait()
        assert request.result is not None  # noqa: S101  (set before done)
        value = request.result.unwrap()
        assert isinstance(value, kind)  # noqa: S101  (each run returns its kind)
        return value

    # ----- the storage thread -----------------------------------------------------

    def _serve(self) -> None:
        while (request := self._queue.get()) is not None:
            request.result = outcome.capture(request.run)
            if request.token is not None and request.done is not None:
                with contextlib.suppress(trio.RunFinishedError):
                    request.token.run_sync_soon(request.done.set)

    def _expired(self, cutoff_ms: int) -> list[RoomId]:
        rows = self._disk.execute("SELECT room_id FROM rooms WHERE last_active < ?", (cutoff_ms,))
        return [RoomId(room_id) for (room_id,) in rows]

    def _load(self, room_id: RoomId) -> RoomRecord:
        # One read transaction: the room row and its messages from the same commit.
        self._disk.execute("BEGIN")
        try:
            return self._read(room_id)
        finally:
            self._disk.execute("COMMIT")

    def _read(self, room_id: RoomId) -> RoomRecord:
        row = self._disk.execute(
            "SELECT verifier, last_id FROM rooms WHERE room_id = ?", (room_id,)
        ).fetchone()
        if row is None:
            return RoomRecord(verifier=None, last_id=0, history=[])
        rows = self._disk.execute(
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
