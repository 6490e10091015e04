"""Hostile bytes on the wire: raw WebSocket frames, the known crash inputs, a fuzzer, a PoW solver.

Everything here is blocking socket code for worker threads (``bench/attack.py``
runs it with ``asyncio.to_thread``): a fuzz case is a few ``sendall`` calls and a
close, and plain sockets let it send what no WebSocket library would, such as an
unmasked client frame or a ping of 200 bytes. Every socket has a timeout, so no
call waits on a server that stopped answering.
"""

import base64
import contextlib
import hashlib
import json
import os
import random
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

SOCKET_TIMEOUT_S: Final = 2.0  # for one connect, send or read on a raw socket
RESPONSE_HEAD_BYTES: Final = 16 * 1024  # a 101 or an error head; more is not a response
READ_AFTER_S: Final = 0.05  # how long a case that waits for an answer waits
FUZZ_PAYLOAD_BYTES: Final = 300  # largest random payload: past 125 (control) and 126 (length)
PROOF_NONCE_BYTES: Final = 8  # the protocol allows 16; 2**64 tries is past any budget


def room_id() -> str:
    """A fresh random room id, as the client makes them (16 bytes in base64url)."""
    return base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()


def token() -> str:
    """A random 32-byte access token: a new room's verifier is whatever comes first."""
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


def client_id() -> str:
    return "a" + os.urandom(6).hex()


def upgrade_request(host: str, port: int, room: str, client: str = "abcd1234") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /ws/{room}?client={client} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length: int | None = None,
) -> bytes:
    """One client frame, or a lie about one: ``length`` overrides the stated length."""
    stated = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv & 7) << 4 | opcode & 0x0F])
    mask_bit = 0x80 if masked else 0
    if stated < 126:
        head += bytes([mask_bit | stated])
    elif stated < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack(">H", stated)
    else:
        head += bytes([mask_bit | 127]) + struct.pack(">Q", stated & (1 << 64) - 1)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(byte ^ key[i % 4] for i, byte in enumerate(payload))


TEXT: Final = 0x1
CONTINUATION: Final = 0x0
CLOSE: Final = 0x8
PING: Final = 0x9
PONG: Final = 0xA

# The protocol violations that, each on one connection closed at once, raced a ping.
VIOLATIONS: Final[dict[str, bytes]] = {
    "RSV bits set": frame(TEXT, b"{}", rsv=7),
    "unmasked frame": frame(TEXT, b"{}", masked=False),
    "continuation without start": frame(CONTINUATION, b"{}"),
    "ping over 125 bytes": frame(PING, b"p" * 200),
}


def _connect(address: tuple[str, int]) -> socket.socket:
    return socket.create_connection(address, timeout=SOCKET_TIMEOUT_S)


def _read_head(sock: socket.socket) -> bytes:
    """Read up to the end of an HTTP response head; what came, if the peer stops first."""
    head = b""
    while b"\r\n\r\n" not in head and len(head) < RESPONSE_HEAD_BYTES:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return head


def open_upgraded(address: tuple[str, int], room: str) -> socket.socket | None:
    """A raw socket past a 101 for ``room``, or None if the server refused the upgrade.

    Resource handling: the caller closes the socket it gets; a refused one is closed here.
    """
    sock = _connect(address)
    try:
        sock.sendall(upgrade_request(*address, room))
        if _read_head(sock).startswith(b"HTTP/1.1 101"):
            return sock
    except BaseException:
        sock.close()
        raise
    sock.close()
    return None


def healthy(address: tuple[str, int]) -> bool:
    """Does ``GET /healthz`` answer 200 within the socket timeout?"""
    try:
        with _connect(address) as sock:
            host, port = address
            sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            return _read_head(sock).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def send_glued_upgrade(address: tuple[str, int]) -> None:
    """An upgrade request and one extra byte in the same write, then read until closed."""
    with _connect(address) as sock:
        sock.sendall(upgrade_request(*address, room_id()) + b"x")
        _read_head(sock)


def send_violation(address: tuple[str, int], data: bytes) -> None:
    """Upgrade, send one protocol-violating frame and close the socket at once."""
    sock = open_upgraded(address, room_id())
    if sock is not None:
        with sock:
            sock.sendall(data)


# ----- the fuzzer ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FuzzCase:
    """One connection's worth of hostile input: upgrade first or not, then the chunks."""

    kind: str
    upgrade: bool
    chunks: tuple[bytes, ...]
    wait_for_answer: bool


def _random_bytes(rng: random.Random, most: int = FUZZ_PAYLOAD_BYTES) -> bytes:
    return rng.randbytes(rng.randint(0, most))


def _header_lies(rng: random.Random) -> FuzzCase:
    payload = _random_bytes(rng)
    length = rng.choice([None, 0, 125, 126, 65535, 65536, 1 << 31, (1 << 63) + 1, len(payload) + 1])
    data = frame(
        rng.randrange(16),
        payload,
        fin=rng.random() < 0.7,
        rsv=rng.randrange(8),
        masked=rng.random() < 0.8,
        length=length,
    )
    cut = rng.randint(1, len(data)) if rng.random() < 0.3 else len(data)
    return FuzzCase("frame header", True, (data[:cut],), rng.random() < 0.5)


def _control(rng: random.Random) -> FuzzCase:
    opcode = rng.choice([CLOSE, PING, PONG])
    if opcode == CLOSE and rng.random() < 0.7:
        code = rng.choice([0, 999, 1000, 1004, 1005, 1006, 1015, 2999, 4999, 5000, 65535])
        payload = struct.pack(">H", code) + _random_bytes(rng, 140)
    else:
        payload = rng.choice([b"", b"\x03", _random_bytes(rng)])
    return FuzzCase("control frame", True, (frame(opcode, payload, fin=rng.random() < 0.8),), True)


def _fragments(rng: random.Random) -> FuzzCase:
    chunks = [frame(rng.choice([TEXT, 0x2]), _random_bytes(rng, 40), fin=False)]
    for _ in range(rng.randint(0, 6)):
        opcode = rng.choice([CONTINUATION, CONTINUATION, TEXT, PING, PONG])
        chunks.append(frame(opcode, _random_bytes(rng, 40), fin=rng.random() < 0.3))
    return FuzzCase("fragments", True, tuple(chunks), rng.random() < 0.5)


def _nested(rng: random.Random, depth: int) -> str:
    opener = rng.choice(["[", '{"a":'])
    closer = "]" if opener == "[" else "}"
    return opener * depth + rng.choice(["1", '"x"', "null", ""]) + closer * depth


def _json_text(rng: random.Random) -> FuzzCase:
    auth = token()
    texts = [
        _nested(rng, rng.choice([10, 100, 1000, 5000])),
        json.dumps({"type": "hello", "auth": rng.choice([auth, auth + "=", 5, None, [auth]])}),
        json.dumps(
            {
                "type": rng.choice(["hello", "message", "clear_history", "x", ""]),
                "iv": _random_bytes(rng, 20).hex(),
                "ciphertext": 1e308,
                "extra": True,
            }
        ),
        f'{{"type":"message","iv":"{"A" * rng.randint(0, 30)}",'
        f'"ciphertext":"{"B" * rng.randint(0, 200)}"}}',
        "1" * rng.randint(1, 5000),
        '"\\ud800"',
        '{"type":"hello","auth":"' + auth + '","type":"message"}',
    ]
    payload = rng.choice(texts).encode()
    if rng.random() < 0.2:
        payload = bytes(b ^ 0x80 if rng.random() < 0.05 else b for b in payload)  # bad UTF-8
    hello = frame(TEXT, json.dumps({"type": "hello", "auth": auth}).encode())
    chunks = (hello, frame(TEXT, payload)) if rng.random() < 0.5 else (frame(TEXT, payload),)
    return FuzzCase("JSON text", True, chunks, True)


def _raw_bytes(rng: random.Random) -> FuzzCase:
    return FuzzCase("random bytes", True, (_random_bytes(rng, 2000),), rng.random() < 0.5)


METHODS: Final = ("GET", "BREW", "PRI", "\x00", "")
TARGETS: Final = ("*", "/", "http://x/", "", "/ws/../..")
VERSIONS: Final = ("HTTP/1.1", "HTTP/2.0", "HTTP/0.9", "HTTP/x", "")


def _http(rng: random.Random) -> FuzzCase:
    room = room_id()
    lines = [
        f"GET /ws/{room}?client=abcd1234 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",  # no key
        f"GET /ws/{room}?client=abcd1234 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: x\r\nSec-WebSocket-Version: 99\r\n\r\n",
        f"GET /ws/{'a' * rng.choice([65, 5000])} HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nX: " + "y" * rng.choice([100, 20000, 70000]) + "\r\n\r\n",
        "POST /healthz HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999\r\n\r\nabc",
        "GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        " ".join((rng.choice(METHODS), rng.choice(TARGETS), rng.choice(VERSIONS))) + "\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\n\r\n" * rng.randint(2, 50),  # pipelined
    ]
    chunks = [rng.choice(lines).encode()]
    if rng.random() < 0.3:
        chunks[0] += _random_bytes(rng, 50)
    return FuzzCase("HTTP request", False, tuple(chunks), True)


def _glued(rng: random.Random) -> FuzzCase:
    request = upgrade_request("h", 1, room_id())
    return FuzzCase("upgrade with bytes glued on", False, (request + _random_bytes(rng, 60),), True)


FUZZ_KINDS: Final[Sequence[Callable[[random.Random], FuzzCase]]] = (
    _header_lies,
    _control,
    _fragments,
    _json_text,
    _raw_bytes,
    _http,
    _glued,
)


def fuzz_case(rng: random.Random) -> FuzzCase:
    return rng.choice(FUZZ_KINDS)(rng)


def run_case(address: tuple[str, int], case: FuzzCase) -> None:
    """Deliver one case on a new connection and close it.

    Error handling: a refused, reset or timed-out socket is the server's answer,
    not a failure of the case: OSError is the caller's to count.
    """
    if case.upgrade:
        sock = open_upgraded(address, room_id())
        if sock is None:
            return
    else:
        sock = _connect(address)
    with sock:
        for chunk in case.chunks:
            sock.sendall(chunk)
        if case.wait_for_answer:
            sock.settimeout(READ_AFTER_S)
            with contextlib.suppress(TimeoutError):
                sock.recv(4096)


# ----- proof of work ------------------------------------------------------------------


def solve(challenge: bytes, bits: int, max_tries: int) -> bytes | None:
    """A nonce with SHA-256(challenge || nonce) starting with ``bits`` zero bits, or None.

    Tries counters 0, 1, 2... as 8-byte big-endian nonces, at most ``max_tries``.
    """
    if not 0 <= bits <= 256:
        return None
    prefix = hashlib.sha256(challenge)
    shift = 256 - bits
    for counter in range(max_tries):
        nonce = counter.to_bytes(PROOF_NONCE_BYTES, "big")
        digest = prefix.copy()
        digest.update(nonce)
        if int.from_bytes(digest.digest(), "big") >> shift == 0:
            return nonce
    return None
