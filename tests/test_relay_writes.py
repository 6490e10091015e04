"""Frames written straight to the socket keep what Hypercorn's writes guaranteed.

The room writes a relayed frame to the socket from its own task when the socket
can take it (securechat/outbox.py, boundary ``write_nowait``). These tests hold
that path to the guarantees of the path it replaces, on a real server: a reader
whose socket takes frames only in part still gets every frame whole and in
order, with the server's pings in between; a reader that stops is closed by the
same limits; frames stop at a close frame.
"""

import json
import os
from pathlib import Path
from typing import Any

import pytest
import trio
import wsproto
import wsproto.events as ws

from securechat import boundary
from tests.harness import (
    b64url,
    joined_peer,
    make_config,
    new_room_id,
    new_token,
    small_window_websocket,
    start_server,
)

IV = "AAAAAAAAAAAAAAAA"


class SlowReader:
    """A WebSocket client on a small receive buffer that reads a little at a time."""

    def __init__(self, sock: trio.socket.SocketType, ws: wsproto.WSConnection) -> None:
        self.sock = sock
        self.ws = ws
        self.pings = 0
        self.messages = 0
        self.changed = trio.lowlevel.ParkingLot()  # woken at each message

    async def send(self, envelope: dict[str, str]) -> None:
        await self.sock.send(self.ws.send(ws.Message(data=json.dumps(envelope))))

    async def read_into(self, out: list[dict[str, Any]], pause: float) -> None:
        """Every message until the socket closes, answering pings; wsproto raises on a
        torn frame, so each one read is whole."""
        text = ""
        while data := await self.sock.recv(2048):
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, ws.Ping):
                    self.pings += 1
                    await self.sock.send(self.ws.send(event.response()))
                elif isinstance(event, ws.TextMessage):
                    text += event.data
                    if event.message_finished:
                        out.append(json.loads(text))
                        text = ""
                        self.messages += 1
                        self.changed.unpark_all()
                elif isinstance(event, ws.CloseConnection):
                    return
            await trio.sleep(pause)


async def test_a_reader_that_takes_frames_in_part_gets_each_whole_and_in_order(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    partial = 0
    write_nowait = boundary._TCPServer.write_nowait

    def counting(self: boundary._TCPServer, data: bytes) -> bool:
        nonlocal partial
        taken = write_nowait(self, data)
        partial += taken and self.holds_unsent
        return taken

    monkeypatch.setattr(boundary._TCPServer, "write_nowait", counting)
    config = make_config(tmp_path / "d", rate=1000.0, burst=1000, ping_interval=0.05)
    server = await start_server(nursery, config)
    room, token = new_room_id(), new_token()
    alice = await joined_peer(nursery, server, room, token)
    slow = SlowReader(*await small_window_websocket(server.port, room, "slowpoke"))
    await slow.send({"type": "hello", "auth": token})
    received: list[dict[str, Any]] = []
    reading = trio.CancelScope()

    async def read() -> None:
        with reading:
            await slow.read_into(received, pause=0.002)

    nursery.start_soon(read)
    sent = []
    with trio.fail_after(30):
        await alice.expect("system", event="joined")
        for _ in range(20):  # some 600 KB, far more than the socket buffers hold
            ciphertext = b64url(os.urandom(22_000))
            await alice.send({"type": "message", "iv": IV, "ciphertext": ciphertext})
            echo = await alice.expect("message")
            sent.append((echo["id"], ciphertext))
        while len([m for m in received if m["type"] == "message"]) < len(sent):
            await slow.changed.park()
    got = [(m["id"], m["ciphertext"]) for m in received if m["type"] == "message"]
    assert got == sent
    assert partial > 0  # the kernel took frames in part: the path under test ran
    assert slow.pings > 0  # and the server's pings went out between them
    reading.cancel()
    slow.sock.close()
    await server.stop()
