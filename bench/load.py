"""The load generator's clients: picows WebSockets that speak the relay protocol cheaply.

Every member is a picows listener, so a received frame costs one callback, one
msgspec decode and one base64 decode of 24 characters: the generator shares the
machine's two cores with the server, and the less it spends the less it takes
from what is measured.

A message's ciphertext carries its own identity and send time::

    sender index (u32) | sequence (u32) | send time, CLOCK_MONOTONIC ns (u64) | 0 (u16) | padding

Those 18 bytes are the first 24 base64url characters, so every receiver, the
sender included (the relay echoes), reads the latency without any table. The
relay treats ciphertext as opaque, so it never notices the bytes are not AES-GCM.
"""

import asyncio
import base64
import os
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

import msgspec
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

CIPHERTEXT_BYTES: Final = 100  # about a short chat line, encrypted
HEAD: Final = struct.Struct(">IIQH")  # sender, sequence, send ns, zero: 18 bytes
HEAD_CHARS: Final = 24  # base64 of the 18-byte head; a multiple of 3 keeps it separable
TAIL: Final = base64.urlsafe_b64encode(bytes(CIPHERTEXT_BYTES - HEAD.size)).rstrip(b"=")
MESSAGE_PREFIX: Final = b'{"type":"message","iv":"AAAAAAAAAAAAAAAA","ciphertext":"'
MESSAGE_SUFFIX: Final = TAIL + b'"}'

TOKEN: Final = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
HELLO: Final = msgspec.json.encode({"type": "hello", "auth": TOKEN})

CONNECT_TIMEOUT_S: Final = 15.0  # handshake plus hello to `connected`, per client
READ_BUFFER_BYTES: Final = 4096  # picows grows it on demand; 5,000 idle clients stay small


class Message(msgspec.Struct, tag="message"):
    ciphertext: str


class History(msgspec.Struct, tag="history"):
    messages: list[msgspec.Raw]


class System(msgspec.Struct, tag="system"):
    event: str


class Error(msgspec.Struct, tag="error"):
    code: str


Envelope = Message | History | System | Error
DECODER: Final[msgspec.json.Decoder[Envelope]] = msgspec.json.Decoder(Envelope)


def message_frame(sender: int, sequence: int) -> bytes:
    """A ``message`` frame stamped with the sender, its sequence number and now."""
    head = HEAD.pack(sender, sequence & 0xFFFFFFFF, time.perf_counter_ns(), 0)
    return MESSAGE_PREFIX + base64.urlsafe_b64encode(head) + MESSAGE_SUFFIX


def read_head(ciphertext: str) -> tuple[int, int, int]:
    """The (sender, sequence, send ns) a ciphertext was stamped with."""
    sender, sequence, sent_ns, _ = HEAD.unpack(base64.urlsafe_b64decode(ciphertext[:HEAD_CHARS]))
    return sender, sequence, sent_ns


@dataclass
class Tally:
    """What the receivers of one measured run saw. Written only by the event loop."""

    latencies_ns: list[int] = field(default_factory=list)
    delivered: int = 0
    sent: int = 0
    expected: int = 0
    errors: int = 0  # error frames from the relay
    dropped: int = 0  # connections the relay closed or lost before we closed them
    close_codes: dict[int, int] = field(default_factory=dict)  # of those, by the relay's code
    recording: bool = False  # messages that arrive while False are not counted


class Member(WSListener):
    """One client of a room. Counts every delivered message into its tally.

    ``on_delivery`` (if set) is called with the sender index of each message this
    member receives, after it is counted: ping-pong answers from there.
    """

    def __init__(self, room_size: int, index: int, tally: Tally) -> None:
        super().__init__()
        self.room_size = room_size
        self.index = index
        self.tally = tally
        self.sequence = 0
        self.transport: WSTransport | None = None
        self.connected: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.closing = False
        self.on_delivery: Callable[[int], None] | None = None
        self.history_length = -1  # messages in the `history` frame, once it came

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        transport.send(WSMsgType.TEXT, HELLO)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        now = time.perf_counter_ns()
        if frame.msg_type is not WSMsgType.TEXT:
            if frame.msg_type is WSMsgType.CLOSE and not self.closing:
                code = frame.get_close_code().value
                self.tally.close_codes[code] = self.tally.close_codes.get(code, 0) + 1
                if not self.connected.done():
                    self.connected.set_exception(ConnectionError(f"closed with {code}"))
            return
        match DECODER.decode(frame.get_payload_as_bytes()):
            case Message(ciphertext=ciphertext):
                tally = self.tally
                if not tally.recording:
                    return
                sender, _, sent_ns = read_head(ciphertext)
                tally.delivered += 1
                tally.latencies_ns.append(now - sent_ns)
                if self.on_delivery is not None:
                    self.on_delivery(sender)
            case History(messages=messages):
                self.history_length = len(messages)
            case System(event="connected"):
                if not self.connected.done():
                    self.connected.set_result(now)
            case System():
                pass
            case Error():
                self.tally.errors += 1

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.closing:
            self.tally.dropped += 1
        if not self.connected.done():
            self.connected.set_exception(ConnectionError("disconnected before `connected`"))

    def send_message(self) -> bool:
        """Send one stamped message; False if this member has no open connection."""
        transport = self.transport
        if transport is None or transport.is_disconnected:
            return False
        transport.send(WSMsgType.TEXT, message_frame(self.index, self.sequence))
        self.sequence += 1
        self.tally.sent += 1
        self.tally.expected += self.room_size
        return True

    def close(self) -> None:
        self.closing = True
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.send_close()
            self.transport.disconnect()


def ws_url(base_url: str, room: str, client: str) -> str:
    return f"{base_url.replace('http://', 'ws://', 1)}/ws/{room}?client={client}"


async def connect(url: str, member: Member) -> int:
    """Open the member's connection and wait for `connected`; the monotonic ns it came.

    Error handling: a refused handshake, a close or a timeout raise; the caller
    decides whether the run can go on.
    """
    async with asyncio.timeout(CONNECT_TIMEOUT_S):
        await ws_connect(
            lambda: member,
            url,
            websocket_handshake_timeout=CONNECT_TIMEOUT_S,
            read_buffer_init_size=READ_BUFFER_BYTES,
        )
        return await member.connected


async def connect_all(
    url_for: Callable[[str], str], plan: Iterable[tuple[str, Member]], concurrency: int
) -> list[BaseException]:
    """Connect every (room, member) with at most ``concurrency`` handshakes in flight.

    ``url_for`` gives the base URL of a room's server (one of several processes).
    Returns the failures; members that failed stay in the plan with no transport.
    """
    gate = asyncio.Semaphore(concurrency)

    async def one(room: str, member: Member) -> None:
        async with gate:
            await connect(ws_url(url_for(room), room, f"m{member.index:07d}"), member)

    outcomes = await asyncio.gather(
        *(one(room, member) for room, member in plan), return_exceptions=True
    )
    return [outcome for outcome in outcomes if isinstance(outcome, BaseException)]


async def close_all(members: Iterable[Member]) -> None:
    """Close every member and give the relay a moment to process the closes."""
    for member in members:
        member.close()
    await asyncio.sleep(0.3)


async def send_paced(senders: Sequence[Member], rate_per_member: float, duration_s: float) -> None:
    """Send ``rate_per_member`` messages per second from each sender for ``duration_s``.

    The sends are spread evenly: message k is due at k / (senders x rate) seconds,
    from sender k mod len(senders), so a room sees its members' messages
    interleaved and no burst lands at once. Late ticks catch up in one batch.
    """
    total = int(len(senders) * rate_per_member * duration_s)
    interval_ns = 1e9 / (len(senders) * rate_per_member)
    start = time.perf_counter_ns()
    k = 0
    while k < total:
        due = min(total, int((time.perf_counter_ns() - start) / interval_ns) + 1)
        while k < due:
            senders[k % len(senders)].send_message()
            k += 1
        wait_ns = start + k * interval_ns - time.perf_counter_ns()
        await asyncio.sleep(max(wait_ns, 0) / 1e9)


async def wait_drained(tally: Tally, timeout_s: float) -> None:
    """Wait until every expected delivery arrived, or ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    # Polling every 10 ms costs nothing and keeps the per-frame path free of a check.
    while tally.delivered < tally.expected and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
