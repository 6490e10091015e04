"""The websockets peer's relay, rewritten on securechat's own stack: Quart-Trio on Hypercorn.

It measures what the stack itself costs. It speaks the same protocol as
``websockets_relay`` (whose parsing it reuses) and does as little: no storage,
no limits, no bad-frame counting, no per-connection sender task. A message is
sent to every member from the sender's own task, one ``websocket.send`` after
another, which is the cheapest a Quart-Trio relay can be (and one that a slow
reader would stall; securechat queues per member instead). The gap between it
and securechat is what securechat's own code costs; the gap between it and the
websockets peer is what the stack costs.

Usage: ``python -m bench.peers.quart_trio_relay --host 127.0.0.1 --port 0``
"""

import argparse
import contextlib
import functools
import json
from collections.abc import Iterable
from typing import Any

import hypercorn.trio
import trio
from hypercorn.config import Config
from quart import websocket
from quart_trio import QuartTrio

from bench.peers.websockets_relay import (
    HELLO_TIMEOUT_S,
    Room,
    admit,
    parse_message,
    parse_target,
    parse_token,
    stamp,
)

app = QuartTrio(__name__)


async def broadcast(members: Iterable[Any], text: str) -> None:
    for member in members:
        # A member whose socket has just closed is leaving by itself.
        with contextlib.suppress(Exception):
            await member.send(text)


@app.websocket("/ws/<room_id>")
async def relay(room_id: str) -> None:
    target = parse_target(f"{websocket.path}?{websocket.query_string.decode()}")
    if target is None:
        return  # Quart answers a handler that never accepts with a refusal
    room_id, client_id = target
    await websocket.accept()
    # The connection itself, not the context-local proxy: other tasks send to it.
    ws = websocket._get_current_object()  # type: ignore[attr-defined]
    token = None
    with trio.move_on_after(HELLO_TIMEOUT_S) as hello_wait:
        token = parse_token(await ws.receive())
    if hello_wait.cancelled_caught:
        await ws.close(4408, "no hello")
        return
    room = admit(room_id, token)
    if not isinstance(room, Room):
        await ws.close(*room)
        return

    first_connection = client_id not in room.members.values()
    room.members[ws] = client_id
    try:
        await ws.send(json.dumps({"type": "history", "messages": list(room.history)}))
        await ws.send(room.system("connected", client_id))
        if first_connection:
            others = [member for member in room.members if member is not ws]
            await broadcast(others, room.system("joined", client_id))
        while True:
            message = parse_message(await ws.receive())
            if message is None:
                await ws.close(1008, "bad frame")
                return
            await broadcast(list(room.members), stamp(room, client_id, *message))
    finally:
        del room.members[ws]
        if client_id not in room.members.values():
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await broadcast(list(room.members), room.system("left", client_id))


async def main(host: str, port: int) -> None:
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.loglevel = "WARNING"  # the serving line below is the only one on a clean start
    config.websocket_ping_interval = None
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(functools.partial(hypercorn.trio.serve, app, config))
        print(f"quart-trio-relay: serving on {urls[0]}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8789)
    args = parser.parse_args()
    trio.run(main, args.host, args.port)
