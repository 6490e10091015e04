"""One room served by two relay processes on one real redis-server (``serve --valkey``).

Both relays run in this test process (``start_server``), each with its own Valkey
client, subscriber and heartbeat, as two processes would: members of one room sit
on different relays. The fault tests with real processes are in
tests/test_scale_faults.py.
"""

from pathlib import Path

import trio

from tests.harness import ServerHandle, connect, joined_peer, make_config, new_room_id, new_token
from tests.harness import start_server as start
from tests.valkey import Valkey


async def two_relays(nursery: trio.Nursery, tmp_path: Path, valkey: Valkey) -> list[ServerHandle]:
    return [await start(nursery, make_config(tmp_path / name, valkey=valkey.url)) for name in "ab"]


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
    a, b = await two_relays(nursery, tmp_path, valkey)
    room, token = new_room_id(), new_token()
    alice = await joined_peer(nursery, a, room, token)
    bob = await joined_peer(nursery, b, room, token)
    await alice.expect("system", event="joined", clientId=bob.client_id)
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
