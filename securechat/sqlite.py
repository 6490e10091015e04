"""``SqliteStorage``: the rooms in a WAL-mode SQLite file under the data dir."""

import functools
import os
import sqlite3
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Final, TypeVar, final

import outcome
import trio

from securechat.protocol import ClientId, MessageOut, RoomId
from securechat.schema import migrate, open_database
from securechat.startup import os_reason
from securechat.storage import (
    MESSAGE_OVERHEAD_BYTES,
    ROOM_OVERHEAD_BYTES,
    Append,
    Clear,
    Confirm,
    Quota,
    Retention,
    RoomMeta,
    RoomRecord,
    SetVerifier,
    StorageError,
    Touch,
    Write,
    message_bytes,
    room_bytes,
)
from securechat.storage_thread import Call, StorageThread

CHECKPOINT_COMMITS: Final = 500  # about SQLite's own 1,000 WAL pages between checkpoints
CHECKPOINT: Final = "PRAGMA wal_checkpoint(PASSIVE)"  # never waits for, nor blocks, a commit
# After a clear or a sweep: copy everything into the database file and empty the WAL,
# so deleted ciphertexts (zeroed by secure_delete in their pages) leave both files.
SCRUB: Final = "PRAGMA wal_checkpoint(TRUNCATE)"
SWEEP_CHUNK: Final = 500  # expired rooms deleted per transaction, so no sweep stalls the loop
NEVER: Final = -(2**62)  # a cutoff no time is before

T = TypeVar("T")
DB_NAME: Final = "securechat.sqlite3"

# The stored bytes of one message row, as ``storage.message_bytes`` counts them.
_SIZE: Final = f"length(iv) + length(ciphertext) + length(sender) + {MESSAGE_OVERHEAD_BYTES}"


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY


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
    its own: loading a room or its history (pages may not be cached) and the
    checkpoints that copy the WAL into the database file and fsync both. The event
    loop's connection never checkpoints (``wal_autocheckpoint=0``); it asks the
    thread for a passive checkpoint every ``CHECKPOINT_COMMITS`` commits, which runs
    beside later commits without blocking them, and for a truncating one after a
    clear or a sweep. That one holds the write lock while it runs: a commit that
    finds the lock taken is handed to the thread, which runs it right after.

    Resource handling: two connections and one thread, all made here; ``close()``
    stops the thread (after the calls already queued), checkpoints what is left
    and closes both connections.

    Durability: every commit survives a crash or ``kill -9`` of the server; a
    power loss may lose the last commits (``synchronous=NORMAL`` in WAL mode).
    """

    def __init__(self, data_dir: Path, quota: Quota | None = None) -> None:
        self._quota = quota or Quota.unlimited()
        try:
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = data_dir / DB_NAME
            # Created owner-only: the file holds verifiers and ciphertexts.
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            self._db = open_database(path)
            # Never wait for a lock on the event loop: see _commit for the one holder.
            self._db.execute("PRAGMA busy_timeout=0")
            self._db.execute("PRAGMA wal_autocheckpoint=0")
            migrate(self._db, path)
            self._count()
            self._disk = open_database(path)  # the storage thread's
            self._disk.execute("PRAGMA busy_timeout=5000")
        except (OSError, sqlite3.Error) as exc:
            reason = os_reason(exc) if isinstance(exc, OSError) else str(exc)
            raise StorageError(f"cannot use data dir {data_dir}: {reason}") from exc
        self._commits = 0
        self._thread = StorageThread("securechat-storage")
        self._probe: Call | None = None  # the last readiness read (``answers``)

    @property
    def quota(self) -> Quota:
        return self._quota

    async def load_meta(self, room_id: RoomId) -> RoomMeta | None:
        return await self._thread.call(
            functools.partial(self._meta, room_id), (RoomMeta, type(None))
        )

    async def load(self, room_id: RoomId) -> RoomRecord:
        return await self._thread.call(
            functools.partial(self._read, self._load, room_id), RoomRecord
        )

    async def load_history(self, room_id: RoomId) -> list[MessageOut]:
        """A room's stored messages, read on the event loop.

        A history is a few rows that the loop's own connection has just written,
        so they come from its page cache: some 40 us, where the hop to the
        storage thread cost 160 us of its own, and far more under load, when each
        of the thread's returns to the interpreter waited for the busy loop to
        let go of it (joins queued for hundreds of ms). A read that meets the
        truncating checkpoint's lock goes to the thread, as a commit does.
        """
        try:
            messages = _history(self._db, room_id)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
            return await self._thread.call(functools.partial(_history, self._disk, room_id), list)
        await trio.lowlevel.checkpoint()
        return messages

    async def write(self, room_id: RoomId, writes: Sequence[Write], now_ms: int) -> None:
        grown, new_rooms = await self._commit(
            functools.partial(self._apply, room_id, writes, now_ms)
        )
        self._quota.stored_bytes += grown
        self._quota.stored_rooms += new_rooms
        self._commits += 1
        if any(isinstance(write, Clear) for write in writes):
            self._thread.put_nowait(functools.partial(self._disk.execute, SCRUB))
        elif self._commits % CHECKPOINT_COMMITS == 0:
            self._thread.put_nowait(functools.partial(self._disk.execute, CHECKPOINT))

    async def sweep(self, now_ms: int, retention: Retention, active: Collection[RoomId]) -> int:
        # Finding them reads the whole rooms table: the storage thread does that.
        find = functools.partial(self._expired, now_ms, retention)
        expired: list[tuple[RoomId, bool]] = await self._thread.call(find, list)
        removed = 0
        for start in range(0, len(expired), SWEEP_CHUNK):
            # ``active`` is read again for every chunk: a room that started since
            # the query keeps its state. Nothing awaits between the check and a
            # commit on the loop, so no room can start in between; a commit handed
            # to the thread runs before any load a room starting meanwhile queues.
            chunk = [
                (r, keep) for r, keep in expired[start : start + SWEEP_CHUNK] if r not in active
            ]
            grown, gone = await self._commit(functools.partial(self._delete, chunk, now_ms))
            self._quota.stored_bytes += grown
            self._quota.stored_rooms -= gone
            removed += len(chunk)
        if removed:
            self._thread.put_nowait(functools.partial(self._disk.execute, SCRUB))
        return removed

    async def answers(self, seconds: float) -> bool:
        """Whether the storage thread runs a cheap read of the file within ``seconds``.

        The thread is where loads wait for the disk: if this read is stuck behind a
        hung disk or a long checkpoint, so are the rooms that are starting.

        Resource handling: at most one such read is queued at a time. Callers that
        come while it is out wait for that one (each for ``seconds`` at most), so
        however often readiness is asked, and however long the disk hangs, the
        thread owes one read.
        """
        probe = self._probe
        if probe is None or probe.done is None or probe.done.is_set():
            probe = self._probe = self._thread.call_nowait(self._read_schema)
        assert probe.done is not None  # noqa: S101  (call_nowait makes it)
        with trio.move_on_after(seconds):
            await probe.done.wait()
            return isinstance(probe.result, outcome.Value)
        return False

    def _read_schema(self) -> object:
        return self._disk.execute("SELECT count(*) FROM sqlite_master").fetchall()

    def close(self) -> None:
        """Finish the queued calls, stop the thread, checkpoint, close (blocks briefly)."""
        self._thread.close()
        self._disk.close()
        self._db.close()  # the last connection to close checkpoints the WAL away

    def _count(self) -> None:
        """Rebuild the quota's counts from the data (once, at start: this reads it all)."""
        # The SQL built here and below holds only this module's constants, never input.
        total = f"coalesce(sum(length(room_id)), 0) + count(*) * {ROOM_OVERHEAD_BYTES}"
        rooms, room_total = self._db.execute(f"SELECT count(*), {total} FROM rooms").fetchone()  # noqa: S608
        sizes = f"SELECT coalesce(sum({_SIZE}), 0) FROM messages"  # noqa: S608
        (messages,) = self._db.execute(sizes).fetchone()
        self._quota.stored_rooms = rooms
        self._quota.stored_bytes = room_total + messages

    async def _commit(self, run: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``run`` in one write transaction: on the loop, or on the thread if it is busy."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
            # A truncating checkpoint holds the write lock: the thread runs this after it.
            result: T = await self._thread.call(
                functools.partial(self._transact, self._disk, run), object
            )
            return result
        try:
            result = run(self._db)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        await trio.lowlevel.checkpoint()
        return result

    @staticmethod
    def _transact(db: sqlite3.Connection, run: Callable[[sqlite3.Connection], T]) -> T:
        db.execute("BEGIN IMMEDIATE")
        try:
            result = run(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    # ----- writes (on either connection, inside a transaction) ------------------------

    def _apply(
        self, room_id: RoomId, writes: Sequence[Write], now_ms: int, db: sqlite3.Connection
    ) -> tuple[int, int]:
        """Apply one room's batch; return the change in stored bytes and in rooms."""
        grown = new_rooms = 0
        marked = db.execute(
            "UPDATE rooms SET last_active = ?, swept_at = NULL WHERE room_id = ?",
            (now_ms, room_id),
        )
        if marked.rowcount == 0:
            db.execute("INSERT INTO rooms (room_id, last_active) VALUES (?, ?)", (room_id, now_ms))
            grown, new_rooms = room_bytes(room_id), 1
        last: Append | None = None
        for write in writes:
            match write:
                case SetVerifier(verifier=verifier, creator=creator):
                    db.execute(
                        "UPDATE rooms SET verifier = ?, creator = ? WHERE room_id = ?",
                        (verifier, creator, room_id),
                    )
                case Confirm():
                    db.execute(
                        "UPDATE rooms SET confirmed_at = ?, creator = NULL WHERE room_id = ?",
                        (now_ms, room_id),
                    )
                case Touch():
                    pass  # the UPDATE above is the whole of it
                case Append(message=m):
                    db.execute(
                        "INSERT INTO messages (room_id, id, sender, sent_at, iv, ciphertext)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (room_id, m.id, m.sender, m.sent_at, m.iv, m.ciphertext),
                    )
                    grown += message_bytes(m)
                    last = write
                case Clear():
                    grown -= _deleted(db, "DELETE FROM messages WHERE room_id = ?", (room_id,))
        if last is not None:
            # Once per batch: the newest id, and the cap applied from it (each later
            # Append keeps a suffix of what the one before kept, so the last one decides).
            newest = last.message.id
            db.execute("UPDATE rooms SET last_id = ? WHERE room_id = ?", (newest, room_id))
            grown -= _deleted(
                db,
                "DELETE FROM messages WHERE room_id = ? AND id <= ?",
                (room_id, newest - last.keep),
            )
        return grown, new_rooms

    @staticmethod
    def _delete(
        chunk: Sequence[tuple[RoomId, bool]], now_ms: int, db: sqlite3.Connection
    ) -> tuple[int, int]:
        """Delete expired rooms' messages, and their rows unless tombstones stay."""
        grown = gone = 0
        for room_id, tombstone in chunk:
            grown -= _deleted(db, "DELETE FROM messages WHERE room_id = ?", (room_id,))
            if tombstone:
                db.execute(
                    "UPDATE rooms SET swept_at = ?, creator = NULL WHERE room_id = ?",
                    (now_ms, room_id),
                )
            else:
                db.execute("DELETE FROM rooms WHERE room_id = ?", (room_id,))
                grown -= room_bytes(room_id)
                gone += 1
        return grown, gone

    # ----- the storage thread -----------------------------------------------------

    def _expired(self, now_ms: int, retention: Retention) -> list[tuple[RoomId, bool]]:
        """Rooms past their time, each with whether a tombstone stays."""

        def cutoff(ms: int | None) -> int:
            return NEVER if ms is None else now_ms - ms

        rows = self._disk.execute(
            "SELECT room_id, swept_at IS NULL AND confirmed_at IS NOT NULL FROM rooms WHERE"
            " (swept_at IS NULL AND confirmed_at IS NOT NULL AND last_active < ?)"
            " OR (swept_at IS NULL AND confirmed_at IS NULL AND last_active < ?)"
            " OR swept_at < ?",
            (
                cutoff(retention.confirmed_ms),
                cutoff(retention.unconfirmed_ms),
                now_ms - retention.tombstone_ms,
            ),
        )
        return [(RoomId(room_id), bool(tombstone)) for room_id, tombstone in rows]

    def _meta(self, room_id: RoomId) -> RoomMeta | None:
        row = self._disk.execute(
            "SELECT verifier, confirmed_at IS NOT NULL, swept_at IS NOT NULL FROM rooms"
            " WHERE room_id = ?",
            (room_id,),
        ).fetchone()
        if row is None or row[0] is None:
            return None
        return RoomMeta(verifier=row[0], confirmed=bool(row[1]), swept=bool(row[2]))

    def _read(self, read: Callable[[RoomId], T], room_id: RoomId) -> T:
        # One read transaction: the room row and its messages from the same commit.
        self._disk.execute("BEGIN")
        try:
            return read(room_id)
        finally:
            self._disk.execute("COMMIT")

    def _load(self, room_id: RoomId) -> RoomRecord:
        row = self._disk.execute(
            "SELECT verifier, last_id, last_active, creator, confirmed_at IS NOT NULL,"
            " swept_at IS NOT NULL FROM rooms WHERE room_id = ?",
            (room_id,),
        ).fetchone()
        if row is None:
            return RoomRecord()
        sizes = self._disk.execute(
            f"SELECT {_SIZE} FROM messages WHERE room_id = ? ORDER BY id",  # noqa: S608
            (room_id,),
        )
        verifier, last_id, last_active, creator, confirmed, swept = row
        return RoomRecord(
            verifier=verifier,
            last_id=last_id,
            last_active=last_active,
            creator=None if creator is None else ClientId(creator),
            confirmed=bool(confirmed),
            swept=bool(swept),
            sizes=tuple(size for (size,) in sizes),
        )


def _history(db: sqlite3.Connection, room_id: RoomId) -> list[MessageOut]:
    rows = db.execute(
        "SELECT id, sender, sent_at, iv, ciphertext FROM messages WHERE room_id = ? ORDER BY id",
        (room_id,),
    ).fetchall()
    return [
        MessageOut(id=i, sender=ClientId(s), sent_at=t, iv=iv, ciphertext=ct)
        for i, s, t, iv, ct in rows
    ]


def _deleted(db: sqlite3.Connection, delete: str, parameters: tuple[object, ...]) -> int:
    """Run a DELETE of message rows; return the stored bytes it freed."""
    return sum(size for (size,) in db.execute(f"{delete} RETURNING {_SIZE}", parameters))
