"""SQLite storage: batches, the history cap, retention, and what ends up in the file."""

import os
import stat
from pathlib import Path

import pytest
import trio
import trio.lowlevel

from securechat import sqlite as storage_module
from securechat.memory import MemoryStorage
from securechat.protocol import ClientId, MessageOut, RoomId
from securechat.sqlite import SqliteStorage
from securechat.storage import Append, Clear, Retention, SetVerifier, Storage, StorageError

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


async def test_batches_and_cap(storage: Storage) -> None:
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


async def test_a_clear_inside_a_batch_drops_only_what_came_before_it(storage: Storage) -> None:
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
    assert len(await storage.load_history(ROOM)) == 1500
    assert _database_pages(data) > empty
    storage.close()


async def test_the_file_is_private_and_holds_no_more_than_documented(tmp_path: Path) -> None:
    data = tmp_path / "data"
    storage = SqliteStorage(data)
    await storage.write(ROOM, [SetVerifier(b"v" * 32), Append(message(1), keep=10)], 5)
    storage.close()
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(data / "securechat.sqlite3").st_mode) == 0o600
    import sqlite3

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
    import sqlite3

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
