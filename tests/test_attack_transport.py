"""Attacks on the transport by someone with no invite link: none ends or exhausts the server.

The crash inputs are the ones measured against Hypercorn 0.18 (tests/attacks.py
makes them). Each test ends by showing that the server still relays a chat.
"""

import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import h11
import pytest
import trio
from hypercorn.events import Event
from hypercorn.protocol.events import Body, Data
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from securechat import boundary
from securechat.headers import SECURITY_HEADERS
from securechat.limits import HTTP_CONNECTIONS_PER_SOURCE
from securechat.wsstream import HardenedWSStream
from tests import attacks
from tests.harness import (
    ServerHandle,
    Urls,
    connect,
    joined_peer,
    make_config,
    new_room_id,
    new_token,
    start_server,
)
from tests.process import ServerProcess, start_process, terminate

HAMMER_SECONDS: Final = 3.0  # how long the threads attack; the crashes came within 1.2 s
HAMMER_THREADS: Final = 4
FUZZ_READ_SECONDS: Final = 0.2  # a fuzzing thread waits this long for an answer, then moves on
HEALTH: Final = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
# HTTP/2's connection preface and an empty SETTINGS frame, as a prior-knowledge client opens.
PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")


async def chat_works(server: Urls) -> None:
    """Two peers join a fresh room and one message reaches both."""
    async with trio.open_nursery() as peers:
        room, token = new_room_id(), new_token()
        alice = await joined_peer(peers, server, room, token)
        bob = await joined_peer(peers, server, room, token)
        await alice.expect("system", event="joined")
        sent = await alice.post()
        for peer in (alice, bob):
            received = await peer.expect("message")
            assert received["ciphertext"] == sent["ciphertext"]
        peers.cancel_scope.cancel()


def hammer(port: int, attack: Callable[[int, random.Random], object]) -> int:
    """Run ``attack`` from ``HAMMER_THREADS`` threads for ``HAMMER_SECONDS``; return the count.

    A refused connection means the server is gone: that is raised at the end.
    """
    deadline = time.monotonic() + HAMMER_SECONDS
    counts: list[int] = []
    refused: list[OSError] = []

    def work(seed: int) -> None:
        rng, count = random.Random(seed), 0
        while time.monotonic() < deadline and not refused:
            try:
                attack(port, rng)
            except ConnectionRefusedError as exc:
                refused.append(exc)
            except OSError:
                pass  # reset or timed out: the server may drop an attacker any way it likes
            count += 1
        counts.append(count)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(HAMMER_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if refused:
        raise refused[0]
    return sum(counts)


async def run_hammer(port: int, attack: Callable[[int, random.Random], object]) -> int:
    with trio.fail_after(HAMMER_SECONDS + 2 * attacks.SOCKET_TIMEOUT + 5):
        return await trio.to_thread.run_sync(hammer, port, attack)


async def pinging_process(tmp_path: Path, *extra: str) -> ServerProcess:
    return await start_process(tmp_path / "data", 0, "--ping-interval", "0.05", *extra)


async def stop_and_check_output(server: ServerProcess) -> str:
    """The process must still be running; stop it and return its output, checked."""
    assert server.process.returncode is None, "the server exited"
    assert await terminate(server) == 0
    output = await server.rest_of_output()
    assert "Traceback" not in output, output
    assert "failed and was closed" not in output, output
    return output


def split_response(data: bytes) -> tuple[int, dict[str, str]]:
    head = data.partition(b"\r\n\r\n")[0].decode("latin-1")
    status_line, *lines = head.split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers


def assert_security_headers(headers: dict[str, str]) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, name


async def exchange(port: int, data: bytes, *, close_within: float = 5.0) -> bytes:
    """Send raw bytes and read until the server closes (within ``close_within`` s)."""
    with trio.fail_after(close_within):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(data)
            received = b""
            try:
                while chunk := await stream.receive_some(65536):
                    received += chunk
            except trio.BrokenResourceError:
                pass  # a reset after the answer
            return received


# -- the two inputs that ended the server ------------------------------------------------


async def test_upgrade_with_a_trailing_byte_gets_400_and_the_server_carries_on(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server(nursery, make_config(tmp_path / "d", ping_interval=0.05))
    for _ in range(10):
        answer = await exchange(server.port, attacks.upgrade_request() + b"x")
        status, headers = split_response(answer)
        assert status == 400
        assert_security_headers(headers)
    await chat_works(server)
    assert not [r for r in caplog.records if r.name == "securechat.failures"]
    await server.stop()


async def test_upgrade_with_trailing_bytes_from_threads(tmp_path: Path) -> None:
    server = await pinging_process(tmp_path)
    try:
        extras = [b"x", b"\x81", b"\r\n", b"hello=1", b"x" * 5000]
        sent = await run_hammer(
            server.port,
            lambda port, rng: attacks.upgrade_with_trailing_byte(port, rng.choice(extras)),
        )
        assert sent > 20
        await chat_works(server)
        await stop_and_check_output(server)
    finally:
        await server.close()


async def test_protocol_violations_after_upgrade_with_pings_on(tmp_path: Path) -> None:
    server = await pinging_process(tmp_path)
    try:
        frames = list(attacks.PROTOCOL_VIOLATIONS.values())
        sent = await run_hammer(
            server.port, lambda port, rng: attacks.violate_after_upgrade(port, rng.choice(frames))
        )
        assert sent > 20
        await chat_works(server)
        await stop_and_check_output(server)
    finally:
        await server.close()


async def test_the_boundary_contains_a_failure_it_was_not_fixed_for(
    nursery: trio.Nursery,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A defect nobody fixed yet: a stream that raises on the byte glued to an
    # upgrade (as Hypercorn's own did, pgjones/hypercorn#225), whether the app
    # accepted the socket first or not. Only the per-connection boundary stands
    # in the way.
    handle = HardenedWSStream.handle

    async def broken(self: HardenedWSStream, event: Event) -> None:
        if isinstance(event, Body | Data) and event.data == b"x":
            raise h11.LocalProtocolError("a defect inside one connection")
        await handle(self, event)

    monkeypatch.setattr(HardenedWSStream, "handle", broken)
    monkeypatch.setattr(boundary, "_is_websocket_upgrade", lambda request: False)
    server = await start_server(nursery, make_config(tmp_path / "d"))
    caplog.set_level(logging.ERROR, logger="securechat.failures")
    for _ in range(5):
        await exchange(server.port, attacks.upgrade_request() + b"x")
    await chat_works(server)
    failures = [r.getMessage() for r in caplog.records if r.name == "securechat.failures"]
    assert len(failures) == 1, failures  # once per kind, however often it happens
    assert "LocalProtocolError" in failures[0]
    for private in (attacks.ROOM_ID, attacks.CLIENT_ID, "127.0.0.1"):
        assert private not in failures[0]
    await server.stop()


# -- a fuzz of the wire --------------------------------------------------------------------


def fuzz_once(port: int, rng: random.Random) -> None:
    """One connection of malformed input: a cut handshake, garbage, or bad frames."""
    request = attacks.upgrade_request()
    choice = rng.randrange(5)
    with socket.create_connection(("127.0.0.1", port), timeout=attacks.SOCKET_TIMEOUT) as sock:
        sock.settimeout(FUZZ_READ_SECONDS)
        if choice == 0:  # a handshake cut anywhere
            sock.sendall(request[: rng.randrange(1, len(request))])
        elif choice == 1:  # noise instead of HTTP
            sock.sendall(rng.randbytes(rng.randrange(1, 2000)))
        elif choice == 2:  # a request line or header mangled
            lines = request.split(b"\r\n")
            i = rng.randrange(len(lines))
            lines[i] = rng.randbytes(rng.randrange(0, 40))
            sock.sendall(b"\r\n".join(lines))
        else:  # a handshake, then random frames (masked or not), maybe in the same packet
            tail = b"".join(_random_frame(rng) for _ in range(rng.randrange(1, 5)))
            if choice == 3:
                sock.sendall(request + tail)
            else:
                sock.sendall(request)
                sock.recv(4096)
                sock.sendall(tail)
        if rng.random() < 0.5:
            sock.recv(4096)


def _random_frame(rng: random.Random) -> bytes:
    first = rng.randrange(256)  # FIN, RSV and opcode all random
    length = rng.choice([0, 1, 5, 125, 126, 200, 70000])
    masked = rng.random() < 0.8
    if length < 126:
        header = bytes([first, (0x80 if masked else 0) | length])
    elif length < 65536:
        header = bytes([first, (0x80 if masked else 0) | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([first, (0x80 if masked else 0) | 127]) + length.to_bytes(8, "big")
    payload = rng.randbytes(min(length, 2000))  # a long frame may be cut short on purpose
    return header + (rng.randbytes(4) if masked else b"") + payload


async def test_a_fuzz_of_handshakes_and_frames_leaves_the_server_serving(tmp_path: Path) -> None:
    # The fuzz leaves unfinished requests open from one address: without the per-source
    # cap, so that the chat after it measures survival, not that cap.
    server = await pinging_process(tmp_path, "--max-connections-per-source", "0")
    try:
        assert await run_hammer(server.port, fuzz_once) > 20
        await chat_works(server)
        await stop_and_check_output(server)
    finally:
        await server.close()


# -- descriptors, HTTP/2, sources, silence ---------------------------------------------------


async def test_a_descriptor_flood_is_refused_with_503_not_emfile(tmp_path: Path) -> None:
    # 256 descriptors: a cap of 256 - 64 = 192 connections, and 300 idle sockets.
    # From one address: the per-source cap would refuse these first (tested below).
    server = await start_process(
        tmp_path / "data", 0, "--max-connections-per-source", "0", descriptors=256
    )
    idle: list[trio.SocketStream] = []
    try:
        with trio.fail_after(20):
            for _ in range(300):
                idle.append(await trio.open_tcp_stream("127.0.0.1", server.port))
            await trio.sleep(0.5)  # let the server accept (or refuse) them all
            started = time.monotonic()
            answer = await exchange(server.port, HEALTH)
            elapsed = time.monotonic() - started
        status, headers = split_response(answer)
        assert status == 503, answer
        assert elapsed < 1.0, elapsed
        assert headers["connection"] == "close"
        assert_security_headers(headers)
        with pytest.raises(ConnectionRejected) as rejected, trio.fail_after(5):
            async with open_websocket_url(server.ws_url(new_room_id(), "abcd1234")):
                pass
        assert rejected.value.status_code == 503
        for stream in idle:
            await stream.aclose()
        idle.clear()
        with trio.fail_after(5):  # once the server has seen the flood go, all are served again
            while True:  # polling a child process: nothing to wait on but its answers
                if (await exchange(server.port, HEALTH)).startswith(b"HTTP/1.1 200"):
                    break
                await trio.sleep(0.05)
        await chat_works(server)
        output = await stop_and_check_output(server)
        assert "EMFILE" not in output
    finally:
        for stream in idle:
            await stream.aclose()
        await server.close()


async def test_http2_over_cleartext_is_refused(server: ServerHandle) -> None:
    status, headers = split_response(await exchange(server.port, PREFACE))
    assert status == 505
    assert_security_headers(headers)
    upgrade = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings, close\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
    )
    answer = await exchange(server.port, upgrade)
    assert answer.startswith(b"HTTP/1.1 200"), answer  # served as HTTP/1.1, never 101
    assert answer.endswith(b"ok")


async def test_http2_over_cleartext_when_the_operator_asks(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = await start_server(nursery, make_config(tmp_path / "d", h2c=True))
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            await stream.send_all(
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")
            )
            frame = await stream.receive_some(9)
    assert frame[3] == 0x04  # the server's SETTINGS frame: it speaks HTTP/2
    await server.stop()


async def test_hypercorns_own_error_responses_carry_the_security_headers(
    server: ServerHandle,
) -> None:
    requests = {
        400: b"GARBAGE\r\n\r\n",
        431: b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000,  # never ends
        501: b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    }
    for expected, request in requests.items():
        status, headers = split_response(await exchange(server.port, request))
        assert status == expected
        assert_security_headers(headers)


async def test_per_source_cap_counts_the_address_a_trusted_proxy_forwarded(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    config = make_config(
        tmp_path / "d", max_connections_per_source=2, trusted_proxies=("127.0.0.0/8",)
    )
    server = await start_server(nursery, config)
    room, token = new_room_id(), new_token()

    async def from_source(address: str, spoofed: str = "203.0.113.1") -> Any:
        # The first entry is the client's own claim; the proxy appended the last.
        header = (b"X-Forwarded-For", f"{spoofed}, {address}".encode())
        return await connect(nursery, server, room, headers=[header])

    first = await from_source("198.51.100.7")
    second = await from_source("198.51.100.7", spoofed="198.51.100.99")
    for peer in (first, second):
        await peer.hello(token)
    third = await from_source("198.51.100.7")
    assert await third.closed_with() == 1013
    assert third.ws.closed is not None
    assert third.ws.closed.reason == "server busy, try again later"
    other = await from_source("198.51.100.8")  # another address is not held back
    await other.hello(token)
    await first.ws.aclose()  # a closed socket frees its place
    with trio.fail_after(5):
        while True:  # the server frees it when it sees the close: soon, not at once
            again = await from_source("198.51.100.7")
            try:
                await again.hello(token)
                break
            except ConnectionClosed:
                await trio.sleep(0.05)
    await server.stop()


async def open_from(address: str, port: int) -> trio.SocketStream:
    """A TCP connection to the server from this loopback ``address``."""
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    await sock.bind((address, 0))
    await sock.connect(("127.0.0.1", port))
    return trio.SocketStream(sock)


async def test_one_address_cannot_hold_every_connection_with_unfinished_requests(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    per_source = 2
    server = await start_server(
        nursery,
        make_config(
            tmp_path / "d", max_connections_per_source=per_source, trusted_proxies=("127.0.0.9",)
        ),
    )
    held: list[trio.SocketStream] = []
    try:
        with trio.fail_after(4):  # inside Hypercorn's 5 s for an unfinished request
            for _ in range(per_source + HTTP_CONNECTIONS_PER_SOURCE):
                stream = await open_from("127.0.0.3", server.port)
                await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never ended
                held.append(stream)
            over = await open_from("127.0.0.3", server.port)
            async with over:
                await over.send_all(HEALTH)
                status, headers = split_response(await over.receive_some(65536))
            assert status == 503
            assert_security_headers(headers)
            # Another address is served, and so is a trusted proxy past the cap: its
            # connections are not counted per peer (its visitors are, by forwarded address).
            for address in ("127.0.0.4", "127.0.0.9"):
                stream = await open_from(address, server.port)
                async with stream:
                    await stream.send_all(HEALTH)
                    assert (await stream.receive_some(65536)).startswith(b"HTTP/1.1 200")
            for _ in range(per_source + HTTP_CONNECTIONS_PER_SOURCE):
                stream = await open_from("127.0.0.9", server.port)
                await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                held.append(stream)
            proxied = await open_from("127.0.0.9", server.port)
            async with proxied:
                await proxied.send_all(HEALTH)
                assert (await proxied.receive_some(65536)).startswith(b"HTTP/1.1 200")
    finally:
        for stream in held:
            await stream.aclose()
    await server.stop()


async def test_without_a_trusted_proxy_forwarded_for_is_ignored(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = await start_server(nursery, make_config(tmp_path / "d", max_connections_per_source=1))
    room = new_room_id()
    first = await connect(nursery, server, room, headers=[(b"X-Forwarded-For", b"198.51.100.1")])
    second = await connect(nursery, server, room, headers=[(b"X-Forwarded-For", b"198.51.100.2")])
    assert await second.closed_with() == 1013  # both are 127.0.0.1
    assert first.ws.closed is None
    await server.stop()


async def test_a_socket_that_never_answers_pings_is_closed(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    config = make_config(tmp_path / "d", ping_interval=0.05, hello_timeout=60)
    server = await start_server(nursery, config)
    room, token = new_room_id(), new_token()
    alive = await joined_peer(nursery, server, room, token)  # trio-websocket answers pings
    started = time.monotonic()
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            await stream.send_all(attacks.upgrade_request(new_room_id()))
            received = b""
            while chunk := await stream.receive_some(4096):
                received += chunk
    silent_for = time.monotonic() - started
    assert received.startswith(b"HTTP/1.1 101")
    assert b"\x89\x00" in received  # it was pinged
    assert 0.9 < silent_for < 8, silent_for  # the deadline is 1 s at this ping interval
    await alive.post()
    await alive.expect("message")  # the peer that answers stays
    await server.stop()


async def test_a_connection_close_request_is_closed_after_its_answer(server: ServerHandle) -> None:
    # The close used to be cancelled with the app's task, leaving the socket open
    # until the peer closed it: a way to hold descriptors with finished requests.
    answer = await exchange(server.port, HEALTH, close_within=2)
    assert answer.startswith(b"HTTP/1.1 200")
