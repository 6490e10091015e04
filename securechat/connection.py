"""One WebSocket connection: authenticate, validate every frame, feed the room.

The connection task reads frames from its transport, turns each into a room
command or an ``error`` envelope, and enforces the per-connection limits (hello
timeout, idle timeout, bad-frame count, token bucket). A hello for a new room
while the creation budget is spent gets a ``challenge`` instead of the room; the
next hello must carry a proof of work for it (see securechat/pow.py). The room
writes frames to the socket through the connection's outbox; a writer task sends
what the socket could not take at once (securechat/outbox.py). Whoever decides
that the connection must end (the room, the registry, or this module) calls
``Member.evict(code)``; the socket is then closed here with that code.
"""

import contextlib
import hashlib
import logging
import math
from dataclasses import dataclass
from typing import Final, Protocol, final

import msgspec
import trio

from securechat.counters import COUNTS
from securechat.errors import CLOSE_REASONS, CloseCode, ErrorCode
from securechat.frames import text_frame
from securechat.limits import ABUSE_THRESHOLD, ABUSE_WINDOW_SECONDS, OUTBOX_FRAMES
from securechat.member import Answer, Member
from securechat.outbox import FrameSink, Outbox
from securechat.pow import new_challenge, proof_holds
from securechat.protocol import (
    Challenge,
    ClearHistory,
    ClientId,
    FrameError,
    Hello,
    RoomId,
    SendMessage,
    SendSignal,
    b64url_decode,
    b64url_encode,
    decode_frame,
    encode,
    encode_error,
)
from securechat.ratelimit import TokenBucket, WindowCounter
from securechat.registry import ProofNeeded, Registry
from securechat.room import SLOW_DOWN, ClearRequest, Command, Leave, Post, Signal

logger: Final = logging.getLogger("securechat.connection")

CLOSE_SEND_SECONDS: Final = 1.0  # time to flush the last frames and the close frame
LEAVE_SEND_SECONDS: Final = 10.0  # time to tell a busy room that a member left
# Time to answer a challenge, from when it is sent: the capped difficulty takes a
# few seconds in a slow browser, and the unlucky draw several times that.
CHALLENGE_SECONDS: Final = 60.0


class Transport(Protocol):
    """The seam to the WebSocket server: messages in, whole frames out, close."""

    async def receive(self) -> str | bytes | None:
        """The next message; a binary one as bytes (an empty one may be None)."""
        ...

    @property
    def sink(self) -> FrameSink:
        """Where the outbox writes frames."""
        ...

    async def close(self, code: int, reason: str) -> None: ...


@final
@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    hello_timeout: float  # seconds
    max_ciphertext: int  # decoded bytes
    max_bad_frames: int
    rate: float  # messages per second
    burst: int
    idle_timeout: float = 0.0  # seconds an authenticated socket may send nothing; 0 = no cap


async def serve_connection(
    transport: Transport,
    room_id: RoomId,
    client_id: ClientId,
    registry: Registry,
    settings: ConnectionSettings,
    source: str | None = None,
) -> None:
    """Serve one accepted WebSocket until the peer leaves or the connection is evicted.

    ``source`` is the peer's address where it is known (see docs/security.md): it
    only prices new rooms, and is never logged or stored.

    Error handling: every bad frame is answered with an ``error`` envelope; the
    limits close the socket with their documented codes. If the peer disconnects,
    the caller's cancellation ends this, and the room is still told.
    """
    async with trio.open_nursery() as writers:  # the outbox's writer, while it has one
        outbox = Outbox(OUTBOX_FRAMES, transport.sink, writers)
        member = Member(client_id, outbox)
        reader = _Reader(transport, room_id, member, registry, settings, source)
        with registry.track(member):
            try:
                with member.cancel_scope:
                    await reader.run()
                await reader.leave()
                # The writer is never cancelled mid-frame while it can still finish:
                # closing the outbox lets it send what is queued (the last error,
                # say) and stop. A reader that is too slow gets no such grace.
                outbox.close()
                grace = 0 if member.close_code is CloseCode.TOO_SLOW else CLOSE_SEND_SECONDS
                with trio.move_on_after(grace):
                    await outbox.drained()
                writers.cancel_scope.cancel()
            finally:
                await reader.leave()
    if member.close_code is not None:
        with trio.move_on_after(CLOSE_SEND_SECONDS) as scope:
            scope.shield = True
            await transport.close(member.close_code, CLOSE_REASONS[member.close_code])


@final
class _Reader:
    """Reads and judges the frames of one connection."""

    def __init__(
        self,
        transport: Transport,
        room_id: RoomId,
        member: Member,
        registry: Registry,
        settings: ConnectionSettings,
        source: str | None,
    ) -> None:
        self._transport = transport
        self._source = source
        self._room_id = room_id
        self._member = member
        self._registry = registry
        self._settings = settings
        self._room: trio.MemorySendChannel[Command] | None = None
        self._hello_seen = False
        self._hello_window = trio.CancelScope()  # replaced in run(); moved by a challenge
        # The challenge this connection was sent and its bits; each one is dearer than
        # the proof before it, so a connection gets at most a handful.
        self._challenge: tuple[bytes, int] | None = None
        self._left = False
        self._bad_frames = 0
        now = trio.current_time()
        self._bucket = TokenBucket(settings.rate, settings.burst, now)
        self._abuse = WindowCounter(ABUSE_WINDOW_SECONDS, ABUSE_THRESHOLD)

    async def run(self) -> None:
        with trio.move_on_after(self._settings.hello_timeout) as self._hello_window:
            while not self._hello_seen:
                await self._handle(await self._transport.receive())
        if not self._hello_seen:
            self._member.evict(CloseCode.HELLO_TIMEOUT)
            return
        idle = self._settings.idle_timeout
        if not idle:
            while True:
                await self._handle(await self._transport.receive())
        # One scope whose deadline each frame moves on: cheaper than a scope a frame.
        # Pings and pongs never get here (the server's WebSocket layer answers them),
        # so they keep no socket open.
        with trio.CancelScope() as waiting:
            while True:
                waiting.deadline = trio.current_time() + idle
                frame = await self._transport.receive()
                waiting.deadline = math.inf
                await self._handle(frame)
        self._member.evict(CloseCode.IDLE)

    async def leave(self) -> None:
        """Tell the room this member is gone, once (shielded: it runs during cancellation)."""
        if self._room is None or self._left:
            return
        self._left = True
        with trio.move_on_after(LEAVE_SEND_SECONDS) as scope:
            scope.shield = True
            # A room that is gone already needs no goodbye.
            with contextlib.suppress(trio.BrokenResourceError):
                await self._room.send(Leave(self._member))

    async def _handle(self, data: str | bytes | None) -> None:
        frame = decode_frame(data, self._settings.max_ciphertext)
        match frame:
            case FrameError():
                self._bad_frame(frame)
            case Hello(auth=auth, proof=proof):
                if self._hello_seen:
                    self._bad_frame(FrameError(ErrorCode.UNEXPECTED_HELLO, "already authenticated"))
                    return
                await self._hello(auth, proof)
            case SendMessage(iv=iv, ciphertext=ciphertext):
                if self._authenticated() and self._allowed(self._bucket.take(trio.current_time())):
                    await self._tell_room(Post(self._member, iv, ciphertext))
            case ClearHistory():
                # A clear costs a token like a message; the room itself allows one per
                # room per CLEAR_COOLDOWN_SECONDS, whichever connection asks.
                if self._authenticated() and self._allowed(self._bucket.take(trio.current_time())):
                    await self._tell_room(ClearRequest(self._member))
            case SendSignal(iv=iv, ciphertext=ciphertext):
                # A signal costs a token like a message: relaying it is the same work.
                if self._authenticated() and self._allowed(self._bucket.take(trio.current_time())):
                    await self._tell_room(Signal(self._member, iv, ciphertext))

    async def _hello(self, auth: str, proof: str | msgspec.UnsetType) -> None:
        proof_bits = self._proof_bits(proof)
        if proof_bits is None:
            return
        verifier = hashlib.sha256(b64url_decode(auth)).digest()
        joined = await self._registry.join(
            self._room_id, self._member, verifier, source=self._source, proof_bits=proof_bits
        )
        if isinstance(joined, ProofNeeded):
            COUNTS.challenges += 1
            challenge = new_challenge()
            self._challenge = (challenge, joined.bits)
            self._hello_window.deadline = trio.current_time() + CHALLENGE_SECONDS
            self._member.deliver_nowait(
                text_frame(encode(Challenge(challenge=b64url_encode(challenge), bits=joined.bits)))
            )
            return
        self._hello_seen = True
        self._room = joined

    def _proof_bits(self, proof: str | msgspec.UnsetType) -> int | None:
        """The bits a hello's proof is worth (0 without one), or None if it is refused.

        After a challenge every hello must answer it; before one, none may carry a proof.
        """
        if self._challenge is None:
            if isinstance(proof, msgspec.UnsetType):
                return 0
            self._bad_frame(FrameError(ErrorCode.BAD_PROOF, "no challenge to answer"))
            return None
        challenge, bits = self._challenge
        if isinstance(proof, msgspec.UnsetType):
            self._bad_frame(FrameError(ErrorCode.BAD_PROOF, "answer the challenge with a proof"))
            return None
        if not proof_holds(challenge, b64url_decode(proof), bits):
            self._bad_frame(FrameError(ErrorCode.BAD_PROOF, "the proof does not hold"))
            return None
        return bits

    def _authenticated(self) -> bool:
        if self._room is None:
            self._bad_frame(FrameError(ErrorCode.NOT_AUTHENTICATED, "send hello first"))
            return False
        return True

    def _allowed(self, allowed: bool) -> bool:
        """Answer a rate-limited frame, and close on sustained abuse. Not a bad frame."""
        if allowed:
            return True
        COUNTS.errors[ErrorCode.RATE_LIMITED] += 1
        self._member.deliver_nowait(SLOW_DOWN)
        if self._abuse.add(trio.current_time()):
            self._member.evict(CloseCode.RATE_ABUSE)
        return False

    def _bad_frame(self, error: FrameError) -> None:
        COUNTS.errors[error.code] += 1
        self._member.deliver_nowait(Answer(encode_error(error)))
        self._bad_frames += 1
        if self._bad_frames >= self._settings.max_bad_frames:
            self._member.evict(CloseCode.POLICY)

    async def _tell_room(self, command: Command) -> None:
        assert self._room is not None  # noqa: S101  (checked by _authenticated)
        try:
            # Without waiting while the inbox has room: this task yields at its next
            # read anyway, so a second yield here would only cost a scheduler pass.
            try:
                self._room.send_nowait(command)
            except trio.WouldBlock:
                await self._room.send(command)  # a busy room: wait (backpressure)
        except trio.BrokenResourceError:
            self._member.evict(CloseCode.INTERNAL)
