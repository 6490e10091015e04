"""A link holder who never reads: the server's send to it is bounded, not the peer's patience.

The attacker needs no one's invite: it opens its own room, says hello with a
tiny receive window, and stops reading while its room fills its socket. The
server's write then blocks once the kernel's buffers are full; the deadline on
that write closes the connection, and everything the connection held goes.
"""

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import pytest
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Event, Request, TextMessage

import securechat.server
from securechat import boundary
from securechat.capacity import ConnectionGauge
from securechat.limits import SEND_TIMEOUT_SECONDS, SHUTDOWN_CLOSE_SECONDS, STALL_SECONDS
from tests.harness import (
    WAIT,
    Peer,
    b64url,
    joined_peer,
    make_config,
    new_client_id,
    new_room_id,
    new_token,
    start_server,
)

SEND_TIMEOUT: Final = 1.0  # seconds: the server's send deadline in these tests
RECEIVE_BUFFER: Final = 4096  # bytes: the attacker's SO_RCVBUF, set before connecting
LARGE_CIPHERTEXT: Final = 24 * 1024  # bytes: a post of about 32 KiB on the wire
POSTS: Final = 120  # at most; the kernel buffers and the high water (32) take about 34
MARGIN: Final = 4.0  # seconds allowed beyond the deadline (two shared cores, a busy loop)


def large_message() -> dict[str, str]:
    return {
        "type": "message",
        "iv": b64url(os.urandom(12)),
        "ciphertext": b64url(os.urandom(LARGE_CIPHERTEXT)),
    }


def recording_gauges(monkeypatch: pytest.MonkeyPatch) -> list[ConnectionGauge]:
    """The gauges the servers started from now on count their connections in."""
    gauges: list[ConnectionGauge] = []

    def record(limit: int) -> ConnectionGauge:
        gauges.append(ConnectionGauge(limit))
        return gauges[-1]

    monkeypatch.setattr(securechat.server, "ConnectionGauge", record)
    return gauges


async def chat_once(alice: Peer, bob: Peer) -> None:
    sent = await alice.post()
    for peer in (alice, bob):
        assert (await peer.expect("message"))["ciphertext"] == sent["ciphertext"]


class NonReader:
    """A raw WebSocket client that authenticates, then never reads again."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._ws = WSConnection(ConnectionType.CLIENT)

    @classmethod
    async def connect(cls, port: int) -> "NonReader":
        sock = trio.socket.socket()
        # Before connect, so the window offered in the handshake is small too.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        await sock.connect(("127.0.0.1", port))
        return cls(trio.SocketStream(sock))

    async def hello(self, room_id: str, token: str) -> None:
        """Upgrade into ``room_id`` and authenticate; return once connected."""
        target = f"/ws/{room_id}?client={new_client_id()}"
        await self.stream.send_all(self._ws.send(Request(host="127.0.0.1", target=target)))
        await self._until(lambda event: isinstance(event, AcceptConnection))
        hello = json.dumps({"type": "hello", "auth": token})
        await self.stream.send_all(self._ws.send(TextMessage(data=hello)))

        def connected(event: Event) -> bool:
            return isinstance(event, TextMessage) and '"connected"' in event.data

        await self._until(connected)

    async def _until(self, wanted: Callable[[Event], bool]) -> None:
        while True:
            data = await self.stream.receive_some(65536)
            assert data, "the server closed during the handshake"
            self._ws.receive_data(data)
            if any(map(wanted, self._ws.events())):
                return

    async def read_to_the_end(self) -> bool:
        """Read what is left until the connection ends; whether it ended with a reset."""
        try:
            while await self.stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            return True
        return False


async def post_until_busy(poster: Peer, posts: int) -> int:
    """Post large messages one at a time until the room holds posts back; return how many.

    One at a time, so the poster's own echoes never pile up: the room refuses a
    post ("rate_limited") only when a member's outbox is at its high water, which
    here means the server's send to the non-reader has been blocked for a while.
    """
    for sent in range(1, posts + 1):
        await poster.send(large_message())
        answer = await poster.receive()
        if answer["type"] == "error":
            assert answer["message"].startswith("room busy"), answer
            return sent
        assert answer["type"] == "message", answer
    raise AssertionError(f"{posts} posts and the room never held one back")


async def test_a_peer_that_never_reads_is_cut_off_at_the_send_deadline(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(boundary, "SEND_TIMEOUT_SECONDS", SEND_TIMEOUT)
    gauges = recording_gauges(monkeypatch)
    config = make_config(tmp_path / "d", rate=1000.0, burst=POSTS)
    server = await start_server(nursery, config)
    (gauge,) = gauges
    other_room, other_token = new_room_id(), new_token()
    alice = await joined_peer(nursery, server, other_room, other_token)
    bob = await joined_peer(nursery, server, other_room, other_token)
    await alice.expect("system", event="joined")
    room, token = new_room_id(), new_token()
    poster = await joined_peer(nursery, server, room, token)
    baseline = gauge.statistics().open  # alice, bob and the poster
    attacker = await NonReader.connect(server.port)
    try:
        with trio.fail_after(WAIT):
            await attacker.hello(room, token)  # its own room: no invite link needed
            await poster.expect("system", event="joined")
        assert gauge.statistics().open == baseline + 1
        started = time.monotonic()
        with trio.fail_after(WAIT):
            await post_until_busy(poster, POSTS)
        stuck_by = time.monotonic()  # the server's write to the attacker was blocked by now
        rounds = 0
        with trio.fail_after(SEND_TIMEOUT + MARGIN):
            while gauge.statistics().open > baseline:  # the server's count: nothing to wait on
                await chat_once(alice, bob)  # another room chats on meanwhile
                rounds += 1
                await trio.sleep(0.02)
        closed = time.monotonic()
        assert closed - started > SEND_TIMEOUT * 0.9  # the deadline cut it, nothing sooner
        assert closed - stuck_by < SEND_TIMEOUT + MARGIN
        assert rounds >= 3, rounds
        with trio.fail_after(WAIT):  # nothing is left to read but what had arrived
            assert await attacker.read_to_the_end(), "expected a reset, not a lingering close"
    finally:
        # Were the send still stuck, this frees it: the test fails instead of hanging.
        await attacker.stream.aclose()
    assert gauge.statistics().failed == 0
    await poster.expect("system", event="left")
    sent = await poster.post()  # the attacker's room goes on without it
    assert (await poster.expect("message"))["ciphertext"] == sent["ciphertext"]
    await server.stop()


async def test_a_peer_that_never_reads_does_not_hold_up_shutdown(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The 1001 for the attacker queues behind the stuck write, and Hypercorn's
    # cancellation on shutdown cannot reach into a shielded send: the deadline can.
    monkeypatch.setattr(boundary, "SEND_TIMEOUT_SECONDS", SEND_TIMEOUT)
    config = make_config(tmp_path / "d", rate=1000.0, burst=POSTS)
    server = await start_server(nursery, config)
    room, token = new_room_id(), new_token()
    poster = await joined_peer(nursery, server, room, token)
    attacker = await NonReader.connect(server.port)
    try:
        with trio.fail_after(WAIT):
            await attacker.hello(room, token)
            await poster.expect("system", event="joined")
            await post_until_busy(poster, POSTS)
        started = time.monotonic()
        with trio.fail_after(SEND_TIMEOUT + SHUTDOWN_CLOSE_SECONDS + MARGIN):
            await server.stop()
        assert time.monotonic() - started > SEND_TIMEOUT * 0.5  # it did wait for the cut
    finally:
        await attacker.stream.aclose()  # frees a send still stuck: a failure, not a hang


def test_the_send_deadline_is_no_longer_than_the_stall_rule() -> None:
    # A socket stuck behind a write is gone by the time the room would judge its
    # reader stopped (4008), not some time after.
    assert SEND_TIMEOUT_SECONDS <= STALL_SECONDS
