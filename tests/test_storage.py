"""SQLite storage: batches, the history cap, retention, and what ends up in the file."""

import base64
import os
import sqlite3
import stat
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.lowlevel

from securechat import sqlite as storage_module
from securechat.memory import MemoryStorage
from securechat.protocol import ClientId, MessageOut, RoomId
from securechat.sqlite import SqliteStorage
from securechat.storage import (
    Append,
    Clear,
    Confirm,
    Quota,
    Retention,
    RoomMeta,
    SetVerifier,
    Storage,
    StorageError,
    Touch,
    message_bytes,
    room_bytes,
)
from securechat.valkey.storage import open_valkey
from tests.valkey import running_valkey


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


ROOM = RoomId("room")
OTHER = RoomId("other")


def retention(kept_ms: int) -> Retention:
    """Every room, confirmed or not, kept ``kept_ms`` after its last activity."""
    return Retention(confirmed_ms=kept_ms, unconfirmed_ms=kept_ms, tombstone_ms=kept_ms)


def message(i: int) -> MessageOut:
    return MessageOut(
        id=i, sender=ClientId("alice"), sent_at=i, iv="AAAAAAAAAAAAAAAA", ciphertext=f"c{i}"
    )


@pytest.fixture(params=["sqlite", "memory"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "sqlite":
        return SqliteStorage(tmp_path / "data")
    return MemoryStorage()


@pytest.fixture(params=["sqlite", "memory", "valkey"])
async def any_storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    """Every backend, a real redis-server for Valkey: for the tests of what all share.

    Retention and sweeping are not among them: in Valkey mode key expiry replaces the
    sweep (tests/test_valkey_storage.py tests the expiry).
    """
    if request.param != "valkey":
        yield SqliteStorage(tmp_path / "data") if request.param == "sqlite" else MemoryStorage()
        return
    with running_valkey(tmp_path / "valkey") as server:
        async with open_valkey(server.url) as valkey:
            yield valkey


async def test_batches_and_cap(any_storage: Storage) -> None:
    storage = any_storage
    assert (await storage.load(ROOM)).verifier is None
    await storage.write(
        ROOM, [SetVerifier(b"v" * 32), *(Append(message(i), keep=3) for i in range(1, 6))], 1
    )
    record = await storage.load(ROOM)
    assert record.verifier == b"v" * 32
    assert record.last_id == 5
    assert [m.ciphertext for m in await storage.load_history(ROOM)] == ["c3", "c4", "c5"]
    await storage.write(ROOM, [Clear(), Append(message(6), keep=3)], 2)
    record = await storage.load(ROOM)
    assert [m.id for m in await storage.load_history(ROOM)] == [6]
    assert record.last_id == 6
    storage.close()


async def test_a_clear_inside_a_batch_drops_only_what_came_before_it(any_storage: Storage) -> None:
    storage = any_storage
    await storage.write(ROOM, [SetVerifier(b"v" * 32), Append(message(1), keep=10)], 1)
    await storage.write(
        ROOM, [Append(message(2), keep=10), Clear(), Append(message(3), keep=10)], 2
    )
    await storage.write(ROOM, [Append(message(4), keep=10), Clear()], 3)
    record = await storage.load(ROOM)
    assert record.verifier == b"v" * 32  # later batches leave the verifier alone
    assert await storage.load_history(ROOM) == []
    assert record.last_id == 4  # ids keep counting up after a clear
    await storage.write(ROOM, [Append(message(5), keep=10)], 4)
    assert [m.id for m in (await storage.load_history(ROOM))] == [5]
    storage.close()


async def test_sweep_keeps_active_and_recent_rooms(storage: Storage) -> None:
    await storage.write(ROOM, [SetVerifier(b"v" * 32), Append(message(1), keep=10)], now_ms=1_000)
    await storage.write(OTHER, [SetVerifier(b"w" * 32)], now_ms=1_000)
    assert await storage.sweep(1_500, retention(1_000), active=set()) == 0
    assert await storage.sweep(2_500, retention(500), active={OTHER}) == 1
    assert (await storage.load(ROOM)).verifier is None
    assert (await storage.load_history(ROOM)) == []
    assert (await storage.load(OTHER)).verifier == b"w" * 32
    storage.close()


class _StartsWhenAsked(set[RoomId]):
    """Active rooms where ``starter`` begins to run as soon as the sweep checks ``trigger``."""

    def __init__(self, trigger: RoomId, starter: RoomId) -> None:
        super().__init__()
        self._trigger, self._starter = trigger, starter

    def __contains__(self, room: object) -> bool:
        if room == self._trigger:
            self.add(self._starter)
        return super().__contains__(room)


async def test_a_room_that_starts_during_a_sweep_keeps_its_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage_module, "SWEEP_CHUNK", 1)
    storage = SqliteStorage(tmp_path / "data")
    rooms = [RoomId(name) for name in ("room-a", "room-b", "room-c")]
    for room in rooms:
        await storage.write(room, [SetVerifier(room.encode().ljust(32, b"."))], now_ms=1)
    active = _StartsWhenAsked(trigger=rooms[0], starter=rooms[2])
    assert await storage.sweep(3, retention(1), active=active) == 2
    assert [(await storage.load(room)).verifier is not None for room in rooms] == [
        False,
        False,
        True,
    ]
    storage.close()


def _database_pages(data: Path) -> int:
    return (data / "securechat.sqlite3").stat().st_size // 4096


async def test_checkpoints_run_on_the_storage_thread_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The event loop's commits never copy the WAL into the database: the thread does."""
    data = tmp_path / "data"
    monkeypatch.setattr(storage_module, "CHECKPOINT_COMMITS", 10**9)
    storage = SqliteStorage(data)
    empty = _database_pages(data)
    # Well past SQLite's own 1,000-page automatic checkpoint, had it been left on.
    for i in range(1, 1500):
        await storage.write(ROOM, [Append(message(i), keep=10_000)], i)
    assert _database_pages(data) == empty
    monkeypatch.setattr(storage_module, "CHECKPOINT_COMMITS", 1)
    await storage.write(ROOM, [Append(message(1500), keep=10_000)], 1500)
    # The thread serves calls in order: once this load is back, the checkpoint is done.
    assert (await storage.load(ROOM)).last_id == 1500
    assert _database_pages(data) > empty
    storage.close()


async def test_the_file_is_private_and_holds_no_more_than_documented(tmp_path: Path) -> None:
    data = tmp_path / "data"
    storage = SqliteStorage(data)
    await storage.write(ROOM, [SetVerifier(b"v" * 32), Append(message(1), keep=10)], 5)
    storage.close()
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(data / "securechat.sqlite3").st_mode) == 0o600
    db = sqlite3.connect(data / "securechat.sqlite3")
    columns = {
        table: [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    db.close()
    assert columns == {
        "rooms": [
            "room_id",
            "verifier",
            "last_id",
            "last_active",
            "creator",
            "confirmed_at",
            "swept_at",
        ],
        "messages": ["room_id", "id", "sender", "sent_at", "iv", "ciphertext"],
    }


def test_unusable_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError, match="cannot use data dir"):
        SqliteStorage(blocker / "data")


async def test_each_write_lets_other_tasks_run(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "data")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        for i in range(1, 50):
            await storage.write(ROOM, [Append(message(i), keep=10)], i)
        nursery.cancel_scope.cancel()
    storage.close()
    assert ticks > 0


async def test_a_failing_batch_fails_alone(tmp_path: Path) -> None:
    """Each room's batch is its own transaction: a bad one must not sink the others."""
    storage = SqliteStorage(tmp_path / "data")
    await storage.write(ROOM, [Append(message(1), keep=10)], 1)
    failures: list[BaseException] = []

    async def bad() -> None:
        try:
            await storage.write(ROOM, [Append(message(1), keep=10)], 2)  # id 1 again
        except sqlite3.IntegrityError as exc:
            failures.append(exc)

    async def good(room: RoomId, i: int) -> None:
        await storage.write(room, [Append(message(i), keep=10)], 2)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(good, OTHER, 1)
        nursery.start_soon(bad)
        nursery.start_soon(good, ROOM, 2)
    assert len(failures) == 1
    assert [m.id for m in (await storage.load_history(ROOM))] == [1, 2]
    assert [m.id for m in (await storage.load_history(OTHER))] == [1]
    storage.close()


# ----- the quota, the lifecycle, migration and scrubbing ------------------------------


def sized(i: int, ciphertext: str) -> MessageOut:
    return MessageOut(
        id=i, sender=ClientId("alice"), sent_at=i, iv="AAAAAAAAAAAAAAAA", ciphertext=ciphertext
    )


async def test_the_counts_follow_every_write_and_match_a_rebuild(tmp_path: Path) -> None:
    data = tmp_path / "data"
    storage = SqliteStorage(data)
    memory = MemoryStorage()
    for store in (storage, memory):
        await store.write(ROOM, [SetVerifier(b"v" * 32), Append(sized(1, "a" * 100), 2)], 1)
        await store.write(ROOM, [Append(sized(2, "b" * 50), 2), Append(sized(3, "c" * 70), 2)], 2)
        await store.write(OTHER, [SetVerifier(b"w" * 32, ClientId("bobby"))], 3)
        await store.write(OTHER, [Append(sized(1, "d" * 30), 2), Clear()], 4)
    expected = (
        room_bytes(ROOM)
        + room_bytes(OTHER)
        + sum(message_bytes(m) for m in (sized(2, "b" * 50), sized(3, "c" * 70)))
    )
    assert (storage.quota.stored_rooms, storage.quota.stored_bytes) == (2, expected)
    assert (memory.quota.stored_rooms, memory.quota.stored_bytes) == (2, expected)
    assert await storage.sweep(10_000, retention(1_000), active=set()) == 2
    assert (storage.quota.stored_rooms, storage.quota.stored_bytes) == (0, 0)
    await storage.write(ROOM, [SetVerifier(b"v" * 32), Append(sized(4, "e" * 10), 5)], 10_001)
    counted = storage.quota.stored_bytes
    storage.close()
    reopened = SqliteStorage(data, Quota(max_bytes=10**9, max_rooms=10))
    assert (reopened.quota.stored_rooms, reopened.quota.stored_bytes) == (1, counted)
    reopened.close()


def test_the_quota_refuses_new_rooms_at_either_limit() -> None:
    quota = Quota(max_bytes=1_000, max_rooms=2)
    assert not quota.rooms_full()
    quota.stored_rooms = 2
    assert quota.rooms_full()
    quota.stored_rooms, quota.stored_bytes = 1, 1_000
    assert quota.rooms_full()
    assert quota.bytes_full()
    assert not Quota(max_bytes=1_000, max_rooms=2).bytes_full(pending=999)


async def test_unconfirmed_rooms_go_first_and_confirmed_ones_leave_a_tombstone(
    storage: Storage,
) -> None:
    kept = Retention(confirmed_ms=10_000, unconfirmed_ms=1_000, tombstone_ms=50_000)
    await storage.write(ROOM, [SetVerifier(b"v" * 32, ClientId("alice")), Confirm()], 0)
    await storage.write(ROOM, [Append(message(1), keep=10)], 0)
    await storage.write(OTHER, [SetVerifier(b"w" * 32, ClientId("alice"))], 0)
    assert (await storage.load(OTHER)).creator == "alice"
    assert await storage.sweep(2_000, kept, active=set()) == 1  # the unconfirmed one
    assert await storage.load_meta(OTHER) is None
    assert await storage.load_meta(ROOM) == RoomMeta(b"v" * 32, confirmed=True, swept=False)
    assert await storage.sweep(20_000, kept, active=set()) == 1  # history gone, verifier kept
    assert await storage.load_meta(ROOM) == RoomMeta(b"v" * 32, confirmed=True, swept=True)
    assert await storage.load_history(ROOM) == []
    assert (await storage.load(ROOM)).last_id == 1
    assert storage.quota.stored_rooms == 1
    # Any write (the right token's join) revives it; left alone, the tombstone goes too.
    await storage.write(ROOM, [Touch()], 30_000)
    assert await storage.load_meta(ROOM) == RoomMeta(b"v" * 32, confirmed=True, swept=False)
    assert await storage.sweep(45_000, kept, active=set()) == 1
    assert await storage.sweep(100_000, kept, active=set()) == 1
    assert await storage.load_meta(ROOM) is None
    assert storage.quota.stored_rooms == 0
    assert storage.quota.stored_bytes == 0
    storage.close()


async def test_a_version_1_database_is_migrated_in_place(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = sqlite3.connect(data / "securechat.sqlite3")
    db.executescript(
        """
        CREATE TABLE rooms (room_id TEXT PRIMARY KEY, verifier BLOB,
            last_id INTEGER NOT NULL DEFAULT 0, last_active INTEGER NOT NULL) WITHOUT ROWID;
        CREATE TABLE messages (room_id TEXT NOT NULL, id INTEGER NOT NULL,
            sender TEXT NOT NULL, sent_at INTEGER NOT NULL, iv TEXT NOT NULL,
            ciphertext TEXT NOT NULL, PRIMARY KEY (room_id, id)) WITHOUT ROWID;
        INSERT INTO rooms VALUES ('room', x'7676', 2, 1234);
        INSERT INTO messages VALUES ('room', 2, 'alice', 1200, 'AAAAAAAAAAAAAAAA', 'c2');
        PRAGMA user_version = 1;
        """
    )
    db.close()
    storage = SqliteStorage(data)
    record = await storage.load(ROOM)
    assert (record.verifier, record.last_id, record.last_active) == (b"vv", 2, 1234)
    assert record.confirmed  # rooms from before are taken to be in use
    assert not record.swept
    assert [m.ciphertext for m in await storage.load_history(ROOM)] == ["c2"]
    assert storage.quota.stored_rooms == 1
    storage.close()
    db = sqlite3.connect(data / "securechat.sqlite3")
    assert db.execute("PRAGMA user_version").fetchone() == (2,)
    db.close()
    SqliteStorage(data).close()  # opening it again changes nothing


def _on_disk(data: Path) -> bytes:
    """Every byte of the database file and its WAL, as an attacker with the disk sees them."""
    return b"".join(
        (data / name).read_bytes()
        for name in ("securechat.sqlite3", "securechat.sqlite3-wal")
        if (data / name).exists()
    )


async def test_cleared_and_capped_out_ciphertexts_leave_the_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    storage = SqliteStorage(data)
    # Distinct, unmistakable ciphertexts: small ones in the b-tree, large ones overflowing.
    texts = [b64(os.urandom(n)) for n in (60, 90, 5_000, 20_000, 32_768, 70, 40)]
    await storage.write(ROOM, [SetVerifier(b"v" * 32)], 0)
    for i, text in enumerate(texts, start=1):
        await storage.write(ROOM, [Append(sized(i, text), keep=3)], i)
    await storage.load(ROOM)  # the storage thread has done all it was asked
    files = _on_disk(data)
    assert texts[-1].encode() in files  # the search finds what is there
    assert any(t.encode() in files for t in texts[:4])  # capped out, yet still readable
    await storage.write(ROOM, [Clear()], 10)
    await storage.load(ROOM)  # served after the truncating checkpoint the clear queued
    files = _on_disk(data)
    assert [t for t in texts if t.encode() in files] == []
    assert (data / "securechat.sqlite3-wal").stat().st_size == 0
    storage.close()


async def test_a_commit_that_meets_a_checkpoint_runs_on_the_storage_thread(
    tmp_path: Path,
) -> None:
    """While the thread holds the write lock, the loop's commit waits there, never fails."""
    storage = SqliteStorage(tmp_path / "data")
    await storage.write(ROOM, [SetVerifier(b"v" * 32)], 0)
    holding, release = threading.Event(), threading.Event()
    path = tmp_path / "data" / "securechat.sqlite3"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def hold_the_lock() -> None:
        other.execute("BEGIN IMMEDIATE")
        holding.set()
        release.wait(timeout=10)
        other.execute("COMMIT")

    storage._thread.put_nowait(hold_the_lock)
    assert await trio.to_thread.run_sync(holding.wait, 10)
    done = trio.Event()

    async def write() -> None:
        await storage.write(ROOM, [Append(message(1), keep=10)], 1)
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write)
        await trio.sleep(0.1)
        assert not done.is_set()  # waiting behind the lock, on the thread, not failed
        release.set()
    assert [m.id for m in await storage.load_history(ROOM)] == [1]
    other.close()
    storage.close()


async def test_a_history_read_that_meets_a_lock_is_read_on_the_storage_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The loop reads a room's history itself; only a read SQLite answers with
    # SQLITE_BUSY (the truncating checkpoint's lock) goes to the thread.
    storage = SqliteStorage(tmp_path / "data")
    await storage.write(ROOM, [SetVerifier(b"v" * 32), Append(message(1), keep=10)], 1)
    history = storage_module._history
    threads: list[str] = []

    def busy_on_the_loop(db: sqlite3.Connection, room_id: RoomId) -> list[MessageOut]:
        threads.append(threading.current_thread().name)
        if threading.current_thread() is threading.main_thread():
            error = sqlite3.OperationalError("database is locked")
            error.sqlite_errorcode = sqlite3.SQLITE_BUSY
            raise error
        return history(db, room_id)

    monkeypatch.setattr(storage_module, "_history", busy_on_the_loop)
    assert [m.id for m in await storage.load_history(ROOM)] == [1]
    assert threads == ["MainThread", "securechat-storage"]
    monkeypatch.setattr(storage_module, "_history", history)
    assert [m.id for m in await storage.load_history(ROOM)] == [1]  # on the loop again
    storage.close()
