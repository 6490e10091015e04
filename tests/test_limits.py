"""Bad input and the limits: every refusal leaves the connection, the room and the server usable."""

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

import securechat.actor
from securechat.limits import ABUSE_THRESHOLD, STALL_SECONDS
from securechat.room import now_ms as wall_ms
from tests.harness import (
    Peer,
    ServerHandle,
    b64url,
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


async def custom_server(nursery: trio.Nursery, tmp_path: Path, **overrides: Any) -> ServerHandle:
    return await start_server(nursery, make_config(tmp_path / "custom", **overrides))


BAD_FRAMES: list[tuple[str | bytes, str]] = [
    ("not json", "bad_json"),
    ("[1, 2]", "bad_json"),
    ('"hello"', "bad_json"),
    ("{}", "bad_envelope"),
    ('{"type": 5}', "bad_envelope"),
    ('{"type": "shout"}', "unknown_type"),
    ('{"type": "message"}', "bad_envelope"),
    ('{"type": "message", "iv": "AAAAAAAAAAAAAAAA", "ciphertext": 5}', "bad_envelope"),
    (json.dumps({**fake_message(), "extra": 1}), "bad_envelope"),
    (json.dumps({**fake_message(), "iv": b64url(bytes(11))}), "bad_envelope"),
    (json.dumps({**fake_message(), "iv": b64url(bytes(13))}), "bad_envelope"),
    (json.dumps({**fake_message(), "iv": "AAAAAAAAAAAAAAA="}), "bad_envelope"),
    (json.dumps({**fake_message(), "iv": "AAAAAAAAAAAAAAA/"}), "bad_envelope"),
    (json.dumps({**fake_message(), "ciphertext": b64url(bytes(16))}), "bad_envelope"),
    (json.dumps({**fake_message(), "ciphertext": "A" * 22 + "B"}), "bad_envelope"),
    (json.dumps({**fake_message(), "ciphertext": "A" * 25}), "bad_envelope"),
    (json.dumps({**fake_message(), "ciphertext": b64url(bytes(32769))}), "too_large"),
    ('{"type": "clear_history", "all": true}', "bad_envelope"),
    ('{"type": "clear_history", "type": "clear_history"}', "bad_envelope"),
    ('{"type": "message", ' + json.dumps(fake_message())[1:], "bad_envelope"),
    (json.dumps(fake_message())[:-1] + ', "iv": "' + b64url(bytes(12)) + '"}', "bad_envelope"),
    ('{"type": "hello", "auth": "x", "auth": "' + new_token() + '"}', "bad_envelope"),
    (json.dumps({**fake_message(), "iv": b64url(bytes(12)) + "\n"}), "bad_envelope"),
    (json.dumps({**fake_message(), "ciphertext": b64url(bytes(18)) + "\n"}), "bad_envelope"),
    ("[" * 1000, "bad_json"),
    ("[" * 1000 + "]" * 1000, "bad_json"),
    ('{"type": "message", "iv": ' + "[" * 1000, "bad_json"),
    ('{"extra": ' + "[" * 1000 + "]" * 1000 + ', "type": "message"}', "bad_json"),
    ('{"type": "message", "extra": ' + '{"a": ' * 1000, "bad_json"),
    (b"\x00\x01binary", "binary_not_supported"),
    ('{"type": "hello", "auth": "' + new_token() + '"}', "unexpected_hello"),
]


async def test_every_bad_frame_gets_an_error_and_the_socket_stays_usable(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = await custom_server(nursery, tmp_path, max_bad_frames=len(BAD_FRAMES) + 1, burst=50)
    room, token = new_room_id(), new_token()
    alice = await joined_peer(nursery, server, room, token)
    bob = await joined_peer(nursery, server, room, token)
    await alice.expect("system", event="joined")
    for frame, code in BAD_FRAMES:
        await alice.send_raw(frame)
        error = await alice.expect("error", code=code)
        assert error["message"]
        # Still usable, and the room carries on.
        await alice.post()
        for peer in (alice, bob):
            await peer.expect("message")
    await server.stop()


async def test_empty_binary_frame(nursery: trio.Nursery, server: ServerHandle) -> None:
    alice = await joined_peer(nursery, server, new_room_id(), new_token())
    await alice.send_raw(b"")
    await alice.expect("error", code="binary_not_supported")


async def test_bad_frames_close_with_1008_counting_before_and_after_hello(
    nursery: trio.Nursery, server: ServerHandle
) -> None:
    room, token = new_room_id(), new_token()
    bystander = await joined_peer(nursery, server, room, token)
    peer = await connect(nursery, server, room)
    for _ in range(4):
        await peer.send_raw("nope")
        await peer.expect("error", code="bad_json")
    await peer.hello(token)
    await bystander.expect("system", event="joined")
    for _ in range(5):
        await peer.send_raw("{}")
        await peer.expect("error", code="bad_envelope")
    await peer.post()  # good frames in between do not reset the count
    await peer.expect("message")
    await peer.send_raw("{}")
    await peer.expect("error", code="bad_envelope")
    assert await peer.closed_with() == 1008
    await bystander.expect("message")
    await bystander.expect("system", event="left", clientId=peer.client_id)


async def test_oversized_frame_closes_with_1009(
    nursery: trio.Nursery, server: ServerHandle
) -> None:
    room, token = new_room_id(), new_token()
    bystander = await joined_peer(nursery, server, room, token)
    peer = await joined_peer(nursery, server, room, token)
    await peer.send_raw("x" * (64 * 1024 + 1))
    assert await peer.closed_with() == 1009
    await bystander.expect("system", event="joined")
    await bystander.expect("system", event="left")
    await bystander.post()
    await bystander.expect("message")


async def test_hello_timeout_closes_with_4408(nursery: trio.Nursery, tmp_path: Path) -> None:
    server = await custom_server(nursery, tmp_path, hello_timeout=0.3)
    silent = await connect(nursery, server, new_room_id())
    assert await silent.closed_with() == 4408
    # Bad frames do not buy time either.
    chatty = await connect(nursery, server, new_room_id())
    for _ in range(3):
        await chatty.send_raw("{}")
    assert await chatty.closed_with() == 4408
    await server.stop()


async def test_rate_limit_drops_and_sustained_abuse_closes(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = await custom_server(nursery, tmp_path, rate=1.0, burst=3)
    room, token = new_room_id(), new_token()
    bystander = await joined_peer(nursery, server, room, token)
    flooder = await joined_peer(nursery, server, room, token)
    await bystander.expect("system", event="joined")
    for _ in range(3):
        await flooder.post()
        await flooder.expect("message")
    await flooder.post()
    await flooder.expect("error", code="rate_limited")
    # Rate-limited frames are not bad frames (the limit of 10 would close at once):
    # only sustained abuse (over 100 within 10 s) closes, with 4429.
    for _ in range(120):
        await flooder.post()
    assert await flooder.closed_with() == 4429
    for _ in range(3):
        await bystander.expect("message")
    await bystander.expect("system", event="left", clientId=flooder.client_id)
    await server.stop()


@pytest.mark.one_process(
    "which of five clears at once wins, and its broadcast before the refusals, is arrival "
    "order in one process; tests/test_scale_faults.py checks the cooldown across relays"
)
async def test_clear_history_cooldown_is_per_room(
    nursery: trio.Nursery, server: ServerHandle
) -> None:
    room, token = new_room_id(), new_token()
    # Five sockets of one holder, each asking once: one clear, four refusals.
    sockets = [await joined_peer(nursery, server, room, token) for _ in range(5)]
    for i, peer in enumerate(sockets):
        for _ in range(len(sockets) - 1 - i):
            await peer.expect("system", event="joined")
    for peer in sockets:
        await peer.send({"type": "clear_history"})
    first, *others = sockets
    for peer in sockets:
        await peer.expect("history_cleared", by=first.client_id)
        await peer.expect("system", event="cleared")
    for peer in others:
        await peer.expect("error", code="rate_limited", message="slow down: frame dropped")
    await first.send({"type": "clear_history"})
    await first.expect("error", code="rate_limited")


async def test_an_idle_socket_is_closed_with_4410(nursery: trio.Nursery, tmp_path: Path) -> None:
    server = await custom_server(nursery, tmp_path, idle_timeout=0.5, ping_interval=0.1)
    room, token = new_room_id(), new_token()
    talker = await joined_peer(nursery, server, room, token)
    silent = await joined_peer(nursery, server, room, token)
    await talker.expect("system", event="joined")
    # Frames keep a socket open, whatever they are; pongs (answering the server's
    # pings every 0.1 s) do not count.
    seen = []
    for _ in range(6):
        await trio.sleep(0.2)
        await talker.send_raw("{}")
        while (envelope := await talker.receive())["type"] != "error":
            seen.append(envelope)
    assert await silent.closed_with() == 4410
    assert silent.ws.closed is not None
    assert silent.ws.closed.reason == "idle too long"
    assert [(e["event"], e["clientId"]) for e in seen] == [("left", silent.client_id)]
    await talker.post()
    await talker.expect("message")
    assert await talker.closed_with() == 4410
    await server.stop()


async def test_a_client_id_must_be_ascii(nursery: trio.Nursery, server: ServerHandle) -> None:
    room = new_room_id()
    await joined_peer(nursery, server, room, new_token(), client_id="alice01")
    for lookalike in ("al%C4%B1ce01", "%C5%BFtuff", "%E2%84%AAelvin"):  # U+0131, U+017F, U+212A
        with trio.fail_after(5), pytest.raises(ConnectionRejected) as refused:
            async with open_websocket_url(f"{server.ws_base}/ws/{room}?client={lookalike}"):
                pass
        assert refused.value.status_code == 400


async def test_room_full_closes_with_4409_after_the_token_check(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = await custom_server(nursery, tmp_path, max_participants=2)
    room, token = new_room_id(), new_token()
    first = await joined_peer(nursery, server, room, token)
    await joined_peer(nursery, server, room, token)
    stranger = await connect(nursery, server, room)
    await stranger.send({"type": "hello", "auth": new_token()})
    assert await stranger.closed_with() == 4401  # learns nothing about capacity
    third = await connect(nursery, server, room)
    await third.send({"type": "hello", "auth": token})
    assert await third.closed_with() == 4409
    await first.expect("system", event="joined")
    await first.post()
    await first.expect("message")
    await server.stop()


async def test_too_many_rooms_closes_with_4503_after_the_token_check(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = await custom_server(nursery, tmp_path, max_rooms=1)
    known, token = new_room_id(), new_token()
    # Register a verifier for a second room, then let that room go idle... by
    # creating it first while there is space.
    first = await joined_peer(nursery, server, known, token)
    other = await connect(nursery, server, new_room_id())
    await other.send({"type": "hello", "auth": new_token()})
    assert await other.closed_with() == 4503
    await first.post()
    await first.expect("message")
    await server.stop()


async def test_wrong_token_beats_too_many_rooms(nursery: trio.Nursery, tmp_path: Path) -> None:
    data = tmp_path / "shared"
    server = await start_server(nursery, make_config(data))
    room, token = new_room_id(), new_token()
    owner = await joined_peer(nursery, server, room, token)
    await owner.ws.aclose()
    await server.stop()
    # Same data, now with room for one active room, taken by someone else.
    server = await start_server(nursery, make_config(data, max_rooms=1))
    await joined_peer(nursery, server, new_room_id(), new_token())
    intruder = await connect(nursery, server, room)
    await intruder.send({"type": "hello", "auth": new_token()})
    assert await intruder.closed_with() == 4401
    rightful = await connect(nursery, server, room)
    await rightful.send({"type": "hello", "auth": token})
    assert await rightful.closed_with() == 4503
    await server.stop()


class RoomClock:
    """The room's clock, ahead of the wall clock by however much the test says."""

    def __init__(self) -> None:
        self.ahead_ms = 0

    def __call__(self) -> int:
        return wall_ms() + self.ahead_ms


async def test_a_reader_that_never_reads_slows_the_room_then_is_closed_with_4008(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = RoomClock()
    monkeypatch.setattr(securechat.actor, "now_ms", clock)
    # A bucket that never runs dry: any 4429 could only come from the room's answers.
    server = await custom_server(nursery, tmp_path, rate=1000.0, burst=1000)
    room, token = new_room_id(), new_token()
    sender = await joined_peer(nursery, server, room, token)
    reader = await joined_peer(nursery, server, room, token)
    sleeper = await joined_peer(nursery, server, room, token)  # never reads from here on
    await sender.expect("system", event="joined")
    await sender.expect("system", event="joined")
    await reader.expect("system", event="joined")
    big = {"type": "message", "iv": b64url(bytes(12)), "ciphertext": b64url(bytes(30_000))}
    relayed = 0

    async def post(envelope: dict[str, Any]) -> dict[str, Any]:
        """Post; return the sender's answer. A relayed message reaches the reader, in order."""
        nonlocal relayed
        await sender.send(envelope)
        answer = await sender.receive()
        if answer["type"] == "message":
            relayed += 1
            assert answer["id"] == relayed  # refused posts take no id
            await reader.expect("message", id=relayed)
        elif answer["type"] == "error":
            assert answer["code"] == "rate_limited", answer
        return answer

    with trio.fail_after(30):
        # Once the sleeper's socket buffers and then its outbox are full enough, the
        # room stops relaying and tells the sender instead of closing anyone.
        while (await post(big))["type"] == "message":
            pass
        # Being told to wait is not abuse: more refusals than the abuse threshold, well
        # within its window, close nobody. (While the kernel still takes some of the
        # sleeper's backlog, a post may go through; it only fills the backlog again.)
        refused = 0
        while refused <= ABUSE_THRESHOLD:
            if (await post(fake_message()))["type"] == "error":
                refused += 1
        # Past the stall limit the sleeper is closed as too slow, and the room goes on.
        # (Each turn moves the room's clock past the limit; a post that went through
        # meanwhile found the sleeper below the mark, which restarts its count.)
        while True:
            clock.ahead_ms += int(STALL_SECONDS * 1000) + 1
            if (left := await post(big))["type"] == "system":
                break
    assert await sleeper.closed_with() == 4008
    assert left == {
        "type": "system",
        "event": "left",
        "clientId": sleeper.client_id,
        "participants": [sender.client_id, reader.client_id],
    }
    await reader.expect("system", event="left", clientId=sleeper.client_id)
    for peer in (sender, reader):
        await peer.expect("message", id=relayed + 1)
    await reader.post()
    for peer in (sender, reader):
        await peer.expect("message", id=relayed + 2, **{"from": reader.client_id})
    await server.stop()


@pytest.mark.parametrize("count", [3])
async def test_many_connections_one_client_id(
    nursery: trio.Nursery, server: ServerHandle, count: int
) -> None:
    room, token = new_room_id(), new_token()
    tabs: list[Peer] = []
    for _ in range(count):
        tabs.append(await joined_peer(nursery, server, room, token, client_id="same-person"))
    # Each tab but the last hears once per later tab that its id is connected again.
    for index, tab in enumerate(tabs):
        for _ in range(count - 1 - index):
            await tab.expect("system", event="also_connected")
    await tabs[0].post()
    for tab in tabs:
        await tab.expect("message", id=1)
