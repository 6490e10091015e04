"""The relay end to end: hello, verifier, relay order, history, clear, sequence numbers."""

from pathlib import Path

import pytest
import trio

from securechat.member import Member
from securechat.room import Outcome, RoomRules
from tests.harness import (
    ServerHandle,
    connect,
    fake_message,
    joined_peer,
    make_config,
    new_room_id,
    new_token,
    start_server,
)

# Each test of `server` runs on one process and on two relays sharing Valkey (conftest.py).
pytestmark = pytest.mark.two_relays


async def test_two_peers_exchange_messages(nursery: trio.Nursery, server: ServerHandle) -> None:
    room, token = new_room_id(), new_token()
    alice = await joined_peer(nursery, server, room, token)
    bob = await connect(nursery, server, room)
    history, connected = await bob.hello(token)
    assert history == {"type": "history", "cap": 10, "messages": []}
    assert connected["participants"] == [alice.client_id, bob.client_id]
    await alice.expect("system", event="joined", clientId=bob.client_id)

    sent = await alice.post()
    for peer in (alice, bob):  # the sender gets its own message back as confirmation
        got = await peer.expect("message", iv=sent["iv"], ciphertext=sent["ciphertext"])
        assert got["from"] == alice.client_id
        assert got["id"] == 1
        assert isinstance(got["sentAt"], int)


async def test_nothing_is_sent_before_hello(nursery: trio.Nursery, server: ServerHandle) -> None:
    room, token = new_room_id(), new_token()
    alice = await joined_peer(nursery, server, room, token)
    await alice.post()
    await alice.expect("message")
    stranger = await connect(nursery, server, room)
    await stranger.send(fake_message())
    await stranger.expect("error", code="not_authenticated")
    await stranger.send({"type": "clear_history"})
    await stranger.expect("error", code="not_authenticated")
    # Still nothing of the room: the next frame is the answer to this bad hello.
    await stranger.send({"type": "hello", "auth": "short"})
    await stranger.expect("error", code="bad_envelope")


async def test_first_hello_registers_the_verifier(
    nursery: trio.Nursery, server: ServerHandle
) -> None:
    room, token = new_room_id(), new_token()
    await joined_peer(nursery, server, room, token)
    intruder = await connect(nursery, server, room)
    await intruder.send({"type": "hello", "auth": new_token()})
    assert await intruder.closed_with() == 4401


async def test_verifier_survives_restart(nursery: trio.Nursery, server: ServerHandle) -> None:
    room, token = new_room_id(), new_token()
    alice = await joined_peer(nursery, server, room, token)
    await alice.post()
    await alice.expect("message")
    server = await server.restart()
    intruder = await connect(nursery, server, room)
    await intruder.send({"type": "hello", "auth": new_token()})
    assert await intruder.closed_with() == 4401
    again = await connect(nursery, server, room)
    history, _ = await again.hello(token)
    assert [m["id"] for m in history["messages"]] == [1]
    await server.stop()


async def test_relay_order_and_ids(nursery: trio.Nursery, server: ServerHandle) -> None:
    room, token = new_room_id(), new_token()
    alice = await joined_peer(nursery, server, room, token)
    bob = await joined_peer(nursery, server, room, token)
    await alice.expect("system", event="joined")
    sent = [await alice.post() for _ in range(8)]
    for peer in (alice, bob):
        got = [await peer.expect("message") for _ in sent]
        assert [g["ciphertext"] for g in got] == [s["ciphertext"] for s in sent]
        assert [g["id"] for g in got] == list(range(1, 9))
        assert all(g["from"] == alice.client_id for g in got)
        times = [g["sentAt"] for g in got]
        assert times == sorted(times)


async def test_history_is_capped_and_oldest_first(
    nursery: trio.Nursery, server: ServerHandle
) -> None:
    room, token = new_room_id(), new_token()
    alice = await joined_peer(nursery, server, room, token)
    sent = []
    for _ in range(15):
        sent.append(await alice.post())
        await alice.expect("message")
    late = await connect(nursery, server, room)
    history, _ = await late.hello(token)
    assert [m["id"] for m in history["messages"]] == list(range(6, 16))
    assert [m["ciphertext"] for m in history["messages"]] == [s["ciphertext"] for s in sent[5:]]


async def test_clear_history(nursery: trio.Nursery, server: ServerHandle) -> None:
    room, token = new_room_id(), new_token()
    alice = await joined_peer(nursery, server, room, token)
    bob = await joined_peer(nursery, server, room, token)
    await alice.expect("system", event="joined")
    await alice.post()
    for peer in (alice, bob):
        await peer.expect("message", id=1)
    await bob.send({"type": "clear_history"})
    for peer in (alice, bob):
        await peer.expect("history_cleared", by=bob.client_id)
        cleared = await peer.expect("system", event="cleared", clientId=bob.client_id)
        assert cleared["participants"] == [alice.client_id, bob.client_id]
    late = await connect(nursery, server, room)
    history, _ = await late.hello(token)
    assert history["messages"] == []
    # Ids are never reused, not even after a clear.
    await alice.post()
    await alice.expect("system", event="joined")
    await alice.expect("message", id=2)


async def test_ids_and_history_survive_restart(nursery: trio.Nursery, server: ServerHandle) -> None:
    room, token = new_room_id(), new_token()
    alice = await joined_peer(nursery, server, room, token)
    for _ in range(3):
        await alice.post()
        await alice.expect("message")
    await alice.send({"type": "clear_history"})
    await alice.expect("history_cleared")
    await alice.post()
    await alice.expect("system", event="cleared")
    await alice.expect("message", id=4)
    server = await server.restart()
    back = await connect(nursery, server, room, alice.client_id)
    history, _ = await back.hello(token)
    assert [m["id"] for m in history["messages"]] == [4]
    await back.post()
    await back.expect("message", id=5)
    await server.stop()


async def test_participants_joined_and_left(nursery: trio.Nursery, server: ServerHandle) -> None:
    room, token = new_room_id(), new_token()
    alice = await joined_peer(nursery, server, room, token)
    bob = await connect(nursery, server, room)
    await bob.hello(token)
    await alice.expect("system", event="joined", clientId=bob.client_id)
    # A second tab of bob's: no new "joined", the same participants.
    bob2 = await connect(nursery, server, room, bob.client_id)
    _, connected = await bob2.hello(token)
    assert connected["participants"] == [alice.client_id, bob.client_id]
    await bob2.ws.aclose()
    await bob.ws.aclose()
    left = await alice.expect("system", event="left", clientId=bob.client_id)
    assert left["participants"] == [alice.client_id]


@pytest.mark.one_process("it breaks the room rules inside this test's own server process")
async def test_a_room_failure_spares_other_rooms(
    nursery: trio.Nursery, server: ServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    doomed, healthy, token = new_room_id(), new_room_id(), new_token()
    original = RoomRules._post

    def explode(
        self: RoomRules, member: Member, iv: str, ciphertext: str, now_ms: int, out: Outcome
    ) -> None:
        if ciphertext.startswith("BOOM"):
            raise RuntimeError("a bug in one room")
        original(self, member, iv, ciphertext, now_ms, out)

    monkeypatch.setattr(RoomRules, "_post", explode)
    victim = await joined_peer(nursery, server, doomed, token)
    a = await joined_peer(nursery, server, healthy, token)
    b = await joined_peer(nursery, server, healthy, token)
    await a.expect("system", event="joined")
    await victim.post()
    await victim.expect("message", id=1)
    await victim.send({**fake_message(), "ciphertext": "BOOM" + "A" * 40})
    assert await victim.closed_with() == 1011
    # The other room never noticed.
    await a.post()
    for peer in (a, b):
        await peer.expect("message", id=1)
    # The failed room starts afresh from storage on the next connection.
    back = await connect(nursery, server, doomed)
    history, _ = await back.hello(token)
    assert [m["id"] for m in history["messages"]] == [1]


async def test_ephemeral_mode_writes_nothing_and_forgets_on_restart(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    data = tmp_path / "never"
    server = await start_server(nursery, make_config(data, ephemeral=True))
    room, token = new_room_id(), new_token()
    alice = await joined_peer(nursery, server, room, token)
    await alice.post()
    await alice.expect("message", id=1)
    late = await connect(nursery, server, room)
    history, _ = await late.hello(token)
    assert [m["id"] for m in history["messages"]] == [1]
    server = await server.restart()
    again = await connect(nursery, server, room)
    history, _ = await again.hello(new_token())  # even the verifier is gone
    assert history["messages"] == []
    await server.stop()
    assert not data.exists()
