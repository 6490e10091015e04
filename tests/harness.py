"""Test helpers: an in-process server on an ephemeral port, and a protocol peer.

``Peer`` speaks the wire protocol from docs/protocol.md with trio-websocket and
nothing from the server package but the envelope shapes it checks.
"""

import base64
import json
import os
import secrets
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import trio
import wsproto
import wsproto.events
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from securechat.config import Config
from securechat.server import serve

UNPRICED: Final = 1_000_000  # new rooms a test server lets through without a proof
WAIT: Final = 5.0  # seconds any single network step may take in a test


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def new_room_id() -> str:
    return b64url(os.urandom(16))


def new_token() -> str:
    return b64url(os.urandom(32))


def new_client_id() -> str:
    return secrets.token_hex(4)


def fake_message() -> dict[str, str]:
    """A message envelope with the right shape; the server cannot tell it from real."""
    return {"type": "message", "iv": b64url(os.urandom(12)), "ciphertext": b64url(os.urandom(40))}


def make_config(data_dir: Path, **overrides: Any) -> Config:
    # No pings: Hypercorn's ping task delays shutdown by up to a ping interval, which
    # every test would pay; test_http checks that pings are sent when configured.
    # New rooms are free: tests make many from one address, and those about the
    # creation budget set it themselves (tests/test_pow_server.py).
    base = Config(
        host="127.0.0.1",
        port=0,
        data_dir=data_dir,
        log_level="warning",
        ping_interval=0,
        new_rooms_burst=UNPRICED,
        source_new_rooms_burst=UNPRICED,
    )
    return replace(base, **overrides)


class Urls:
    """Addresses derived from a server's base URL, ``http://127.0.0.1:PORT``."""

    base: str

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    @property
    def ws_base(self) -> str:
        return "ws" + self.base.removeprefix("http")

    def ws_url(self, room_id: str, client_id: str) -> str:
        return f"{self.ws_base}/ws/{room_id}?client={client_id}"


@dataclass
class ServerHandle(Urls):
    """A running in-process server. ``stop()`` shuts it down the way SIGTERM does."""

    config: Config
    base: str  # http://127.0.0.1:PORT
    _shutdown: trio.Event
    _done: trio.Event
    _nursery: trio.Nursery = field(repr=False)

    async def stop(self) -> None:
        self._shutdown.set()
        with trio.fail_after(10):
            await self._done.wait()

    async def restart(self) -> "ServerHandle":
        """Stop, then serve again on the same port and data dir."""
        await self.stop()
        return await start_server(self._nursery, replace(self.config, port=self.port))


async def start_server(nursery: trio.Nursery, config: Config) -> ServerHandle:
    shutdown = trio.Event()
    done = trio.Event()

    async def run(*, task_status: trio.TaskStatus[str]) -> None:
        try:
            await serve(config, shutdown, task_status=task_status)
        finally:
            done.set()

    base: str = await nursery.start(run)
    return ServerHandle(config, base, shutdown, done, nursery)


@dataclass
class Peer:
    """One protocol client on an open WebSocket."""

    ws: WebSocketConnection
    client_id: str

    async def send(self, envelope: dict[str, Any]) -> None:
        await self.ws.send_message(json.dumps(envelope))

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send_message(data)

    async def receive(self) -> dict[str, Any]:
        with trio.fail_after(WAIT):
            data = await self.ws.get_message()
        envelope = json.loads(data)
        assert isinstance(envelope, dict)
        return envelope

    async def expect(self, kind: str, **fields: Any) -> dict[str, Any]:
        envelope = await self.receive()
        assert envelope["type"] == kind, envelope
        for key, value in fields.items():
            assert envelope[key] == value, (key, envelope)
        return envelope

    async def hello(self, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Authenticate; return the history and connected envelopes."""
        await self.send({"type": "hello", "auth": token})
        history = await self.expect("history")
        connected = await self.expect("system", event="connected", clientId=self.client_id)
        return history, connected

    async def post(self) -> dict[str, Any]:
        """Send a message; return what was sent (to compare with the echo)."""
        message = fake_message()
        await self.send(message)
        return message

    async def closed_with(self) -> int | None:
        """Read until the server closes; return the close code."""
        with trio.fail_after(WAIT):
            while True:
                try:
                    await self.ws.get_message()
                except ConnectionClosed:
                    assert self.ws.closed is not None
                    return self.ws.closed.code


async def connect(
    nursery: trio.Nursery,
    server: Urls,
    room_id: str,
    client_id: str | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> Peer:
    """Open a WebSocket into ``room_id``; the connection lives in ``nursery``."""
    client_id = client_id or new_client_id()
    with trio.fail_after(WAIT):
        ws = await _open(nursery, server.ws_url(room_id, client_id), headers or [])
    return Peer(ws, client_id)


async def _open(
    nursery: trio.Nursery, url: str, headers: list[tuple[bytes, bytes]]
) -> WebSocketConnection:
    async def hold(*, task_status: trio.TaskStatus[WebSocketConnection]) -> None:
        async with open_websocket_url(url, extra_headers=headers) as ws:
            task_status.started(ws)
            try:
                await trio.sleep_forever()
            finally:
                # trio-websocket can leave its socket open when its close is
                # cancelled (a ResourceWarning later): close the stream ourselves.
                with trio.CancelScope(shield=True):
                    await ws._stream.aclose()

    ws: WebSocketConnection = await nursery.start(hold)
    return ws


async def joined_peer(
    nursery: trio.Nursery,
    server: Urls,
    room_id: str,
    token: str,
    client_id: str | None = None,
) -> Peer:
    peer = await connect(nursery, server, room_id, client_id)
    await peer.hello(token)
    return peer


async def small_window_websocket(
    port: int, room_id: str, client_id: str
) -> tuple[trio.socket.SocketType, wsproto.WSConnection]:
    """A raw WebSocket client on a 4 KiB receive buffer, past its handshake.

    The server's writes to it soon find the socket full, as for a client that
    reads slowly or has stopped reading.
    """
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect(("127.0.0.1", port))
    ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    target = f"/ws/{room_id}?client={client_id}"
    await sock.send(ws.send(wsproto.events.Request(host="127.0.0.1", target=target)))
    response = b""
    while b"\r\n\r\n" not in response:  # the handshake's answer, and nothing more
        response += await sock.recv(1)
    assert response.startswith(b"HTTP/1.1 101"), response
    ws.receive_data(response)
    assert [type(e) for e in ws.events()] == [wsproto.events.AcceptConnection]
    return sock, ws
