"""A minimal relay of the securechat wire protocol, written with `websockets` on asyncio.

It is the relay a Python engineer would otherwise write, kept as the benchmark's
point of comparison: short, correct for every well-behaved client, and with the
library's defaults. It does what docs/protocol.md asks of the relay path (hello
with a trust-on-first-use verifier, history then ``connected``, ``joined`` and
``left``, every message relayed to every member, the sender included, with
``id``, ``from`` and ``sentAt``) and keeps the last messages of each room in
memory only. It has no rate limits, no room or connection caps, no bad-frame
counting and no ``clear_history``: a frame it does not understand closes the
connection with 1008.

Usage: ``python -m bench.peers.websockets_relay --host 127.0.0.1 --port 0``
"""

import argparse
import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

HISTORY_CAP: Final = 10  # messages kept per room, as securechat's default
HELLO_TIMEOUT_S: Final = 10.0  # as securechat's default
MAX_CIPHERTEXT_BYTES: Final = 32768  # as securechat's default

PATH: Final = re.compile(r"/ws/([A-Za-z0-9_-]{1,64})")
CLIENT_ID: Final = re.compile(r"[a-z0-9_-]{4,16}", re.IGNORECASE)
BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]*")


def decode_base64url(text: object) -> bytes | None:
    """The bytes of canonical unpadded base64url text, or None for anything else."""
    if not isinstance(text, str) or not BASE64URL.fullmatch(text) or len(text) % 4 == 1:
        return None
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error:
        return None
    # Non-zero unused bits decode too; only the canonical spelling re-encodes the same.
    if base64.urlsafe_b64encode(data).rstrip(b"=").decode() != text:
        return None
    return data


@dataclass
class Room:
    verifier: bytes | None = None
    members: dict[ServerConnection, str] = field(default_factory=dict)
    history: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=HISTORY_CAP))
    next_id: int = 1

    def participants(self) -> list[str]:
        return list(dict.fromkeys(self.members.values()))

    def system(self, event: str, client_id: str) -> str:
        return json.dumps(
            {
                "type": "system",
                "event": event,
                "clientId": client_id,
                "participants": self.participants(),
            }
        )


rooms: dict[str, Room] = {}


def parse_target(path: str) -> tuple[str, str] | None:
    """The (roomId, clientId) of a ``/ws/<roomId>?client=<clientId>`` path."""
    url = urlsplit(path)
    room = PATH.fullmatch(url.path)
    clients = parse_qs(url.query).get("client", [])
    if room is None or len(clients) != 1 or not CLIENT_ID.fullmatch(clients[0]):
        return None
    return room.group(1), clients[0]


def check_path(connection: ServerConnection, request: Request) -> Response | None:
    if parse_target(request.path) is None:
        return connection.respond(HTTPStatus.BAD_REQUEST, "bad room or client id\n")
    return None


def parse_token(frame: str | bytes) -> bytes | None:
    try:
        hello = json.loads(frame)
    except ValueError:
        return None
    if not isinstance(hello, dict) or set(hello) != {"type", "auth"} or hello["type"] != "hello":
        return None
    token = decode_base64url(hello["auth"])
    return token if token is not None and len(token) == 32 else None


def parse_message(frame: str | bytes) -> tuple[str, str] | None:
    """The (iv, ciphertext) of a valid message frame."""
    try:
        message = json.loads(frame)
    except ValueError:
        return None
    if not isinstance(message, dict) or set(message) != {"type", "iv", "ciphertext"}:
        return None
    iv = decode_base64url(message["iv"])
    ciphertext = decode_base64url(message["ciphertext"])
    if message["type"] != "message" or iv is None or ciphertext is None:
        return None
    if len(iv) != 12 or not 17 <= len(ciphertext) <= MAX_CIPHERTEXT_BYTES:
        return None
    return message["iv"], message["ciphertext"]


def admit(room_id: str, token: bytes | None) -> Room | tuple[int, str]:
    """The room a hello with ``token`` joins, or the close code and reason refusing it."""
    if token is None:
        return 1008, "expected hello"
    room = rooms.setdefault(room_id, Room())
    verifier = hashlib.sha256(token).digest()
    if room.verifier is None:
        room.verifier = verifier
    elif not hmac.compare_digest(room.verifier, verifier):
        return 4401, "wrong token"
    return room


def stamp(room: Room, client_id: str, iv: str, ciphertext: str) -> str:
    """Number a message, keep it in the room's history, and return its envelope."""
    envelope = {
        "type": "message",
        "id": room.next_id,
        "from": client_id,
        "sentAt": int(time.time() * 1000),
        "iv": iv,
        "ciphertext": ciphertext,
    }
    room.next_id += 1
    room.history.append(envelope)
    return json.dumps(envelope)


async def relay(websocket: ServerConnection) -> None:
    target = parse_target(websocket.request.path if websocket.request else "")
    if target is None:  # check_path refused it already
        return
    room_id, client_id = target
    try:
        token = parse_token(await asyncio.wait_for(websocket.recv(), HELLO_TIMEOUT_S))
    except TimeoutError:
        await websocket.close(4408, "no hello")
        return
    room = admit(room_id, token)
    if not isinstance(room, Room):
        await websocket.close(*room)
        return

    first_connection = client_id not in room.members.values()
    room.members[websocket] = client_id
    try:
        await websocket.send(json.dumps({"type": "history", "messages": list(room.history)}))
        await websocket.send(room.system("connected", client_id))
        if first_connection:
            others = [member for member in room.members if member is not websocket]
            broadcast(others, room.system("joined", client_id))
        async for frame in websocket:
            message = parse_message(frame)
            if message is None:
                await websocket.close(1008, "bad frame")
                return
            broadcast(room.members, stamp(room, client_id, *message))
    except ConnectionClosed:
        pass
    finally:
        del room.members[websocket]
        if client_id not in room.members.values():
            broadcast(room.members, room.system("left", client_id))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8788)
    args = parser.parse_args()
    async with serve(relay, args.host, args.port, process_request=check_path) as server:
        host, port = server.sockets[0].getsockname()[:2]
        print(f"websockets-relay: serving on http://{host}:{port}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
