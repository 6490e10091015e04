"""Wire-level attack inputs, as plain blocking sockets: for tests and the benchmarks.

Each function opens one TCP connection to ``127.0.0.1:port``, sends what an
attacker without an invite link would send, and closes it. They are blocking
on purpose, so that several threads (or a load generator) can run them at once
against a server in another process. None needs a room to exist.

- ``upgrade_with_trailing_byte``: a WebSocket upgrade request with one extra
  byte in the same packet (used to end the whole Hypercorn server,
  pgjones/hypercorn#225).
- ``violate_after_upgrade``: a completed upgrade, then one frame that breaks
  RFC 6455 (``PROTOCOL_VIOLATIONS``), then an immediate close (raced
  Hypercorn's ping task into a BusyResourceError that ended the server).
"""

import os
import socket
from typing import Final

SOCKET_TIMEOUT: Final = 5.0  # seconds any one blocking step may take

ROOM_ID: Final = "attackattackattackatta"  # well-formed: reaches the app and its accept
CLIENT_ID: Final = "abcd1234"


def upgrade_request(room_id: str = ROOM_ID, client_id: str = CLIENT_ID) -> bytes:
    """A valid WebSocket upgrade for ``/ws/<room_id>``, with no Origin (a non-browser)."""
    return (
        f"GET /ws/{room_id}?client={client_id} HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode("ascii")


def _mask() -> bytes:
    return os.urandom(4)


# Frames a server must reject (RFC 6455 section 5): each closes the socket with 1002.
PROTOCOL_VIOLATIONS: Final[dict[str, bytes]] = {
    "rsv-bits": b"\xf1\x80" + _mask(),  # FIN, RSV1-3 set, text, masked, empty
    "unmasked": b"\x81\x05hello",  # a client frame without a mask
    "lone-continuation": b"\x80\x80" + _mask(),  # continuation with nothing to continue
    "long-ping": b"\x89\xfe\x00\x7e" + _mask() + b"a" * 126,  # control frame over 125 bytes
}


def upgrade_with_trailing_byte(port: int, extra: bytes = b"x") -> bytes:
    """Send an upgrade request with ``extra`` in the same packet; return what came back.

    A fixed server answers 400 and closes; the answer is read until EOF or timeout.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as sock:
        sock.sendall(upgrade_request() + extra)
        return _read_until_closed(sock)


def violate_after_upgrade(port: int, frame: bytes) -> bool:
    """Upgrade, send ``frame`` and close at once; return whether the upgrade got a 101."""
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as sock:
        sock.sendall(upgrade_request())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                return False
            head += chunk
        sock.sendall(frame)
    return head.startswith(b"HTTP/1.1 101")


def _read_until_closed(sock: socket.socket, limit: int = 64 * 1024) -> bytes:
    data = b""
    try:
        while len(data) < limit and (chunk := sock.recv(4096)):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data
