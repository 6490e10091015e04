"""Signals, ``also_connected`` and the history's cap, end to end against the real server."""

import os
from pathlib import Path
from typing import Any

import pytest
import trio

from securechat.limits import MAX_SIGNAL_BYTES
from tests.harness import (
    WAIT,
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
from tests.test_attack_send import POSTS, NonReader, large_message, post_until_busy

# Each test of `server` runs on one process and on two relays sharing Valkey (conftest.py).
pytestmark = pytest.mark.two_relays


def fake_signal(size: int = 40) -> dict[str, str]:
    """A signal envelope with the right shape; the server cannot tell it from real."""
    return {"type": "signal", "iv": b64url(os.urandom(12)), "ciphertext": b64url(os.urandom(size))}


def relayed(sender: Peer, sent: dict[str, str]) -> dict[str, str]:
    return {"type": "signal", "from": sender.client_id, "iv": sent["iv"],
            "ciphertext": sent["ciphertext"]}  # fmt: skip


async def test_a_signal_reaches_every_other_connection_and_is_never_stored(
    nursery: trio.Nursery, server: ServerHandle
) -> None:
    room, token = new_room_id(), new_token()
    alice = await connect(nursery, server, room)
    history, _ = await alice.hello(token)
    assert history == {"type": "history", "cap": 10, "messages": []}
    tab1 = await joined_peer(nursery, server, room, token)
    await alice.expect("system", event="joined", clientId=tab1.client_id)
    # A second connection of the same clientId: only its first one hears of it.
    tab2 = await joined_peer(nursery, server, room, token, tab1.client_id)
    also = await tab1.expect("system", event="also_connected", clientId=tab1.client_id)
    assert also["participants"] == [alice.client_id, tab1.client_id]

    sent = fake_signal()
    await tab1.send(sent)
    # Alice's next frame is the signal: she got no word of bob's second tab.
    assert await alice.receive() == relayed(tab1, sent)
    assert await tab2.receive() == relayed(tab1, sent)
    # The sending connection gets nothing back: its next frame is its message's echo.
    message = await tab1.post()
    await tab1.expect("message", id=1, ciphertext=message["ciphertext"])
    for peer in (alice, tab2):
        await peer.expect("message", id=1)

    later = await connect(nursery, server, room)
    history, _ = await later.hello(token)
    assert history["cap"] == 10
    assert [m["ciphertext"] for m in history["messages"]] == [message["ciphertext"]]
    for peer in (alice, tab1, tab2):
        await peer.expect("system", event="joined", clientId=later.client_id)


async def test_signals_take_tokens_and_are_checked_like_any_frame(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    config = make_config(tmp_path / "data", history=3, rate=0.01, burst=3, max_bad_frames=6)
    server = await start_server(nursery, config)
    room, token = new_room_id(), new_token()
    stranger = await connect(nursery, server, room)
    await stranger.send(fake_signal())
    await stranger.expect("error", code="not_authenticated")  # bad frame 1
    history, _ = await stranger.hello(token)
    assert history == {"type": "history", "cap": 3, "messages": []}
    bob = await joined_peer(nursery, server, room, token)
    await stranger.expect("system", event="joined")

    for size, code in ((MAX_SIGNAL_BYTES + 1, "too_large"), (16, "bad_envelope")):
        await stranger.send(fake_signal(size))
        await stranger.expect("error", code=code)  # bad frames 2 and 3
    await stranger.send({**fake_signal(), "iv": b64url(bytes(11))})
    await stranger.expect("error", code="bad_envelope")  # 4
    await stranger.send({**fake_signal(), "sentAt": 1})
    await stranger.expect("error", code="bad_envelope")  # 5

    # The bucket holds three tokens, shared with messages.
    largest = fake_signal(MAX_SIGNAL_BYTES)
    for sent in (largest, fake_signal()):
        await stranger.send(sent)
        assert await bob.receive() == relayed(stranger, sent)
    await stranger.post()
    await stranger.expect("message", id=1)
    await bob.expect("message", id=1)
    await stranger.send(fake_signal())
    await stranger.expect("error", code="rate_limited", message="slow down: frame dropped")
    await stranger.post()
    await stranger.expect("error", code="rate_limited")  # not a bad frame: still open
    # The sixth bad frame closes the connection: signals count like any other.
    await stranger.send({"type": "signal", "iv": "AAAA"})
    await stranger.expect("error", code="bad_envelope")
    assert await stranger.closed_with() == 1008
    await server.stop()


async def test_a_congested_room_drops_a_signal_silently(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    config = make_config(tmp_path / "data", rate=1000.0, burst=POSTS + 10)
    server = await start_server(nursery, config)
    room, token = new_room_id(), new_token()
    poster = await joined_peer(nursery, server, room, token)
    carol = await joined_peer(nursery, server, room, token)
    await poster.expect("system", event="joined", clientId=carol.client_id)
    # Carol keeps reading throughout, so only the non-reader holds the room up.
    frames: list[dict[str, Any]] = []
    left = trio.Event()

    async def read_carol() -> None:
        while not left.is_set():
            frame = await carol.receive()
            frames.append(frame)
            if frame.get("event") == "left":
                left.set()

    attacker = await NonReader.connect(server.port)
    try:
        with trio.fail_after(WAIT):
            await attacker.hello(room, token)
            await poster.expect("system", event="joined")
            nursery.start_soon(read_carol)
            await post_until_busy(poster, POSTS)
        await poster.send(fake_signal())
        # No answer to the signal: the next frame answers the message after it.
        await poster.send(large_message())
        await poster.expect("error", code="rate_limited", message="room busy: frame dropped")
    finally:
        await attacker.stream.aclose()
    await poster.expect("system", event="left")
    with trio.fail_after(WAIT):
        await left.wait()
    assert "signal" not in [frame["type"] for frame in frames]
    assert frames[-1]["event"] == "left"
    await server.stop()
