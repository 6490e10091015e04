"""One room served by two relay processes on one real redis-server (``serve --valkey``).

Both relays run in this test process (``start_server``), each with its own Valkey
client, subscriber and heartbeat, as two processes would: members of one room sit
on different relays. The fault tests with real processes are in
tests/test_scale_faults.py.
"""

from pathlib import Path

import coredis
import trio

from securechat.protocol import RoomId
from securechat.valkey import keys
from tests.harness import (
    Peer,
    ServerHandle,
    connect,
    joined_peer,
    make_config,
    new_room_id,
    new_token,
)
from tests.harness import start_server as start
from tests.valkey import Valkey


async def two_relays(nursery: trio.Nursery, tmp_path: Path, valkey: Valkey) -> list[ServerHandle]:
    return [await start(nursery, make_config(tmp_path / name, valkey=valkey.url)) for name in "ab"]


async def a_member_on_each(
    nursery: trio.Nursery, tmp_path: Path, valkey: Valkey
) -> tuple[ServerHandle, ServerHandle, str, str, Peer, Peer]:
    """Two relays, and a room with alice on the first and bob on the second."""
    a, b = await two_relays(nursery, tmp_path, valkey)
    room, token = new_room_id(), new_token()
    alice = await joined_peer(nursery, a, room, token)
    bob = await joined_peer(nursery, b, room, token)
    await alice.expect("system", event="joined", clientId=bob.client_id)
    return a, b, room, token, alice, bob


async def test_members_on_two_relays_see_one_order(
    nursery: trio.Nursery, tmp_path: Path, valkey: Valkey
) -> None:
    a, b = await two_relays(nursery, tmp_path, valkey)
    room, token = new_room_id(), new_token()
    alice = await joined_peer(nursery, a, room, token)
    bob = await joined_peer(nursery, b, room, token)
    joined = await alice.expect("system", event="joined", clientId=bob.client_id)
    assert joined["participants"] == [alice.client_id, bob.client_id]
    sent = []
    for _ in range(5):
        sent += [await alice.post(), await bob.post()]
    seen = {}
    for peer in (alice, bob):
        got = [await peer.expect("message") for _ in sent]
        ids = [m["id"] for m in got]
        assert ids == sorted(ids)
        assert len(set(ids)) == len(ids)
        seen[peer.client_id] = [(m["id"], m["ciphertext"]) for m in got]
    assert seen[alice.client_id] == seen[bob.client_id]
    assert sorted(c for _, c in seen[alice.client_id]) == sorted(m["ciphertext"] for m in sent)
    carol = await connect(nursery, a, room)
    history, connected = await carol.hello(token)
    assert [(m["id"], m["ciphertext"]) for m in history["messages"]] == seen[bob.client_id]
    assert connected["participants"] == [alice.client_id, bob.client_id, carol.client_id]
    await bob.expect("system", event="joined", clientId=carol.client_id)


async def test_clear_signal_and_leave_cross_relays(
    nursery: trio.Nursery, tmp_path: Path, valkey: Valkey
) -> None:
    _, b, room, _, alice, bob = await a_member_on_each(nursery, tmp_path, valkey)
    await bob.send({"type": "signal", "iv": "A" * 16, "ciphertext": "B" * 40})
    signal = await alice.expect("signal")
    assert signal["from"] == bob.client_id
    await alice.send({"type": "clear_history"})
    for peer in (alice, bob):
        await peer.expect("history_cleared", by=alice.client_id)
        await peer.expect("system", event="cleared", clientId=alice.client_id)
    await bob.ws.aclose()
    left = await alice.expect("system", event="left", clientId=bob.client_id)
    assert left["participants"] == [alice.client_id]
    stranger = await connect(nursery, b, room)
    await stranger.send({"type": "hello", "auth": new_token()})
    assert await stranger.closed_with() == 4401


async def test_the_participant_cap_counts_every_relay(
    nursery: trio.Nursery, tmp_path: Path, valkey: Valkey
) -> None:
    a, b = [
        await start(nursery, make_config(tmp_path / n, valkey=valkey.url, max_participants=2))
        for n in "ab"
    ]
    room, token = new_room_id(), new_token()
    await joined_peer(nursery, a, room, token)
    await joined_peer(nursery, b, room, token)
    third = await connect(nursery, a, room)
    await third.send({"type": "hello", "auth": token})
    assert await third.closed_with() == 4409


async def test_the_new_room_budget_counts_the_rooms_of_every_relay(
    nursery: trio.Nursery, tmp_path: Path, valkey: Valkey
) -> None:
    # Four free new rooms for the whole server, draining one a day: two made on each
    # relay use them up, and the next one on either needs a proof.
    options = {"valkey": valkey.url, "new_rooms_burst": 4, "new_rooms_per_minute": 1 / 1440}
    a, b = [await start(nursery, make_config(tmp_path / n, **options)) for n in "ab"]
    for relay in (a, b, a, b):
        await joined_peer(nursery, relay, new_room_id(), new_token())
    client = coredis.Redis(host="127.0.0.1", port=valkey.port, decode_responses=False)
    async with client:
        with trio.fail_after(15):
            while True:  # polled: a beat of each relay has shared its two rooms
                if float((await client.hget(keys.BUDGET, "level")) or 0) > 3.99:
                    break
                await trio.sleep(0.1)
            # Both relays beat once more after that (every 2 s each): each then has it.
            beats = {await client.hget(keys.BUDGET, "at")}
            while len(beats) < 4:
                await trio.sleep(0.1)
                beats.add(await client.hget(keys.BUDGET, "at"))
    for relay in (a, b):
        peer = await connect(nursery, relay, new_room_id())
        await peer.send({"type": "hello", "auth": new_token()})
        challenge = await peer.expect("challenge")
        assert challenge["bits"] >= 14


async def test_a_relay_that_stops_leaves_no_participant_behind(
    nursery: trio.Nursery, tmp_path: Path, valkey: Valkey
) -> None:
    a, b, room, token, alice, bob = await a_member_on_each(nursery, tmp_path, valkey)
    await a.stop()  # alice gets 1001; her presence goes with her leave, or with a's retirement
    left = await bob.expect("system", event="left", clientId=alice.client_id)
    assert left["participants"] == [bob.client_id]
    carol = await connect(nursery, b, room)
    _, connected = await carol.hello(token)
    assert connected["participants"] == [bob.client_id, carol.client_id]


async def test_a_relay_keeps_in_valkey_only_the_rooms_it_serves(
    nursery: trio.Nursery, tmp_path: Path, valkey: Valkey
) -> None:
    a, _ = await two_relays(nursery, tmp_path, valkey)
    room, token = new_room_id(), new_token()
    alice = await joined_peer(nursery, a, room, token)
    other_tab = await joined_peer(nursery, a, room, token, client_id=alice.client_id)
    client = coredis.Redis(host="127.0.0.1", port=valkey.port, decode_responses=False)
    async with client:
        (key,) = [k async for k in client.scan_iter(match="securechat:process:*:rooms")]
        assert await client.smembers(key) == {room.encode()}
        await alice.ws.aclose()
        await other_tab.ws.aclose()
        with trio.fail_after(10):
            while True:  # polled: the room's last connection here has left
                if not await client.exists([key]):
                    break
                await trio.sleep(0.05)
        assert await client.zcard(keys.presence(RoomId(room))) == 0
