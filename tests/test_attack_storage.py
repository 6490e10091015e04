"""Attacks on storage and room slots, against a real server with small limits.

Each test plays an anonymous client (no link) that creates rooms at will, next to
people who hold a link, and checks that the people keep their rooms.
"""

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.lowlevel

import securechat.registry
from securechat.room import now_ms as wall_ms
from tests.harness import (
    Peer,
    ServerHandle,
    b64url,
    connect,
    joined_peer,
    make_config,
    new_room_id,
    new_token,
    start_server,
)
from tests.process import start_process

MAXIMAL: int = 32 * 1024  # the default largest ciphertext, in bytes


def maximal_message() -> dict[str, str]:
    return {
        "type": "message",
        "iv": b64url(os.urandom(12)),
        "ciphertext": b64url(os.urandom(MAXIMAL)),
    }


async def server_with(nursery: trio.Nursery, data: Path, **overrides: Any) -> ServerHandle:
    return await start_server(nursery, make_config(data, rate=1000.0, burst=1000, **overrides))


async def refused_with(nursery: trio.Nursery, server: ServerHandle, room: str, token: str) -> int:
    peer = await connect(nursery, server, room)
    await peer.send({"type": "hello", "auth": token})
    code = await peer.closed_with()
    assert code is not None
    return code


async def confirmed_room(nursery: trio.Nursery, server: ServerHandle) -> tuple[str, str, Peer]:
    """A room two clientIds have joined; the first stays connected."""
    room, token = new_room_id(), new_token()
    owner = await joined_peer(nursery, server, room, token)
    guest = await joined_peer(nursery, server, room, token)
    await owner.expect("system", event="joined")
    await guest.ws.aclose()
    await owner.expect("system", event="left")
    return room, token, owner


async def test_at_the_stored_rooms_quota_new_rooms_get_4507_and_old_ones_keep_working(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = await server_with(nursery, tmp_path / "data", max_stored_rooms=3)
    room, token, owner = await confirmed_room(nursery, server)
    for _ in range(2):  # the attacker's: one hello each, never confirmed
        await joined_peer(nursery, server, new_room_id(), new_token())
    assert await refused_with(nursery, server, new_room_id(), new_token()) == 4507
    await owner.post()
    await owner.expect("message", id=1)
    again = await connect(nursery, server, room)
    history, _ = await again.hello(token)
    assert [m["id"] for m in history["messages"]] == [1]
    await server.stop()


async def test_at_the_byte_quota_rooms_replace_their_own_messages_and_the_disk_stays_bounded(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    # 1 MiB holds about 23 maximal messages; a room may keep 40.
    server = await server_with(nursery, data, max_storage_mb=1, history=40)
    room, token = new_room_id(), new_token()
    flood = await joined_peer(nursery, server, room, token)
    ids = []
    for _ in range(40):
        await flood.send(maximal_message())
        ids.append((await flood.expect("message"))["id"])
    assert ids == list(range(1, 41))  # every message relayed: the room paid for each
    assert await refused_with(nursery, server, new_room_id(), new_token()) == 4507
    late = await connect(nursery, server, room)
    history, _ = await late.hello(token)
    kept = [m["id"] for m in history["messages"]]
    assert 15 <= len(kept) <= 24  # trimmed by the quota, not the cap of 40
    assert kept[-1] == 40
    on_disk = sum(f.stat().st_size for f in data.iterdir())
    assert on_disk < 8 * 1024 * 1024, on_disk  # the WAL included; 40 messages were 1.8 MB
    await server.stop()


async def test_a_confirmed_room_gets_a_slot_while_an_attacker_squats_every_other(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    server = await server_with(nursery, data)
    room, token, owner = await confirmed_room(nursery, server)
    await owner.post()
    await owner.expect("message", id=1)
    unconfirmed, its_token = new_room_id(), new_token()
    await (await joined_peer(nursery, server, unconfirmed, its_token)).ws.aclose()
    # The same data, now with 3 slots, all taken by the attacker's rooms of one socket each.
    await server.stop()
    server = await server_with(nursery, data, max_rooms=3)
    squatters = [await joined_peer(nursery, server, new_room_id(), new_token()) for _ in range(3)]
    assert await refused_with(nursery, server, new_room_id(), new_token()) == 4503
    assert await refused_with(nursery, server, unconfirmed, its_token) == 4503  # not confirmed
    assert await refused_with(nursery, server, room, new_token()) == 4401
    back = await connect(nursery, server, room)
    history, _ = await back.hello(token)
    assert [m["id"] for m in history["messages"]] == [1]
    assert await squatters[0].closed_with() == 4503  # the oldest squatter made way
    await back.post()
    await back.expect("message", id=2)
    await server.stop()


async def swept(data: Path, room: str) -> None:
    """Wait for the sweeper's first pass to make ``room`` a tombstone (read from the file)."""
    with trio.fail_after(5):
        while True:
            db = sqlite3.connect(data / "securechat.sqlite3")
            try:
                row = db.execute("SELECT swept_at FROM rooms WHERE room_id = ?", (room,)).fetchone()
            finally:
                db.close()
            if row is not None and row[0] is not None:
                return
            await trio.sleep(0.01)


async def test_a_swept_room_keeps_its_verifier_and_an_unconfirmed_one_goes(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    server = await server_with(nursery, data)
    room, token, owner = await confirmed_room(nursery, server)
    await owner.post()
    await owner.expect("message", id=1)
    await owner.ws.aclose()
    probed = new_room_id()
    await (await joined_peer(nursery, server, probed, new_token())).ws.aclose()
    await server.stop()
    # Forty days later (past --retention-days 30), the sweep runs as the server starts.
    monkeypatch.setattr(securechat.registry, "now_ms", lambda: wall_ms() + 40 * 86_400_000)
    server = await server_with(nursery, data)
    await swept(data, room)
    assert await refused_with(nursery, server, room, new_token()) == 4401  # not taken over
    back = await connect(nursery, server, room)
    history, _ = await back.hello(token)
    assert history["messages"] == []  # the history went; the link still opens its room
    await back.post()
    await back.expect("message", id=2)  # ids go on: nobody's client mistakes it for old
    anyone = await connect(nursery, server, probed)
    await anyone.hello(new_token())  # a probe's id is free again
    await server.stop()


async def test_a_wrong_token_for_a_stored_room_starts_no_room(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = await server_with(nursery, tmp_path / "data")
    room, token = new_room_id(), new_token()
    await (await joined_peer(nursery, server, room, token)).ws.aclose()
    await trio.lowlevel.checkpoint()
    for _ in range(20):
        assert await refused_with(nursery, server, room, new_token()) == 4401
    await server.stop()


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_live_full_rooms_do_not_hold_their_history_in_memory(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Filling 40 live rooms from 1 to 10 maximal messages costs the server next to no RSS.

    With the history in memory each room held 10 x 44 KB (measured: +44 KB per message
    per room). The first message is sent before measuring, so that what one socket
    keeps after one large frame has passed (the web stack's buffers) is not counted.
    """
    rooms = 40
    server = await start_process(
        tmp_path / "data",
        0,
        *("--rate", "1000", "--burst", "1000"),
        *("--new-rooms-burst", "100000", "--source-new-rooms-burst", "100000"),
    )
    try:
        peers = []
        for _ in range(rooms):
            peer = await joined_peer(nursery, server, new_room_id(), new_token())
            await peer.send(maximal_message())
            await peer.expect("message")
            peers.append(peer)
        before = _rss_kib(server.process.pid)
        for peer in peers:
            for _ in range(9):
                await peer.send(maximal_message())
                await peer.expect("message")
        added = _rss_kib(server.process.pid) - before
        # The history of these rooms is 40 x 9 x 44 KB = 15.5 MiB; allow a tenth of it.
        assert added < rooms * 9 * 44 // 10, f"{added} KiB for {rooms} rooms"
    finally:
        await server.close()
