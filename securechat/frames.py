"""WebSocket frames from server to client, built once per message (RFC 6455 section 5.2).

A server's frames are never masked, so a message relayed to a room's members is
the same bytes on every member's socket: the room builds them once and every
outbox holds that one ``bytes`` object. Only single, final text frames are made
(the relay never fragments, and compression is declined at the handshake).
"""

import struct
from typing import Final

_TEXT: Final = 0x81  # FIN set, opcode 1 (text)
_SHORT: Final = 125  # longest payload whose length fits in the second byte
_LENGTH16: Final = struct.Struct("!BBH")
_LENGTH64: Final = struct.Struct("!BBQ")


def text_frame(text: str) -> bytes:
    """The whole frame that carries ``text`` as one unmasked text message."""
    payload = text.encode()
    size = len(payload)
    if size <= _SHORT:
        return bytes((_TEXT, size)) + payload
    if size <= 0xFFFF:
        return _LENGTH16.pack(_TEXT, 126, size) + payload
    return _LENGTH64.pack(_TEXT, 127, size) + payload


def text_payload(frame: bytes) -> str:
    """The text a frame made by ``text_frame`` carries (for tests and tools)."""
    size = frame[1]
    start = 2 if size <= _SHORT else 4 if size == 126 else 10
    return frame[start:].decode()
