"""A live session in one room: connect, hello, read, heartbeat, reconnect with backoff.

Close codes decide what happens when a connection ends:

    ===========================  =====================================================
    code                         the session
    ===========================  =====================================================
    1001, 1011, 1012, 1013,      reconnects after a backoff (0.5 s doubling to 30 s,
    4008, 4408, 4410, 1006/none, jittered, reset after a successful hello)
    refused, timeout
    4401                         stops: the link's key does not match the room
    4409                         stops: the room is full
    1008, 1009, 4429, 4503,      stops: the server refused us; retrying would not help
    4507
    HTTP 4xx at the handshake    stops (a malformed clientId or a refused Origin)
    ===========================  =====================================================

A ``challenge`` (a new room while the server's budget for new rooms is spent)
is reported as ``Challenged``, solved in place and answered with a second hello.

A session that announces itself sends a ``profile`` signal after each
``connected`` and whenever someone else joins, so names are known before anyone
speaks.

All tasks live in the nursery of ``open_session``; leaving its ``async with``
cancels them and closes the socket.
"""

import contextlib
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final, final

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
)

from securechat.errors import CloseCode
from securechat.peer.conversation import Conversation
from securechat.peer.events import (
    Challenged,
    Disconnected,
    Event,
    Presence,
    ServerError,
    Stopped,
)
from securechat.peer.keys import RoomKeys
from securechat.peer.link import InviteLink
from securechat.peer.pow import SLICE_HASHES, solve_some
from securechat.peer.transport import open_room_socket
from securechat.protocol import ClientId

EVENT_BUFFER: Final = 256  # events queued for a slow consumer before reading pauses
PING_SECONDS: Final = 20.0  # a ping this often notices a connection that died silently
PONG_SECONDS: Final = 10.0  # no pong within this: the connection counts as lost
RATE_RETRY_SECONDS: Final = 1.0  # after ``rate_limited``, pending messages go again

_FATAL: Final[dict[int, str]] = {
    CloseCode.BAD_TOKEN: "wrong key for this room: the link is not the one the room was "
    "created with (check that it was copied whole)",
    CloseCode.ROOM_FULL: "the room is full: try again later",
    CloseCode.POLICY: "the server closed the connection: too many bad frames",
    CloseCode.TOO_BIG: "the server closed the connection: frame too large",
    CloseCode.RATE_ABUSE: "the server closed the connection: too many messages too fast",
    CloseCode.TOO_MANY_ROOMS: "the server has too many active rooms: try again later",
    CloseCode.STORAGE_FULL: "the server's storage is full: it opens no new rooms now, "
    "try again later",
}


@final
@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays between reconnection attempts, in seconds."""

    first: float = 0.5
    limit: float = 30.0

    def delay(self, attempt: int) -> float:
        """The wait before attempt ``attempt`` (1-based), jittered to 50-100%."""
        base = min(self.limit, self.first * (1 << min(attempt - 1, 30)))
        return base * random.uniform(0.5, 1.0)  # noqa: S311  (jitter, not a secret)


@final
@dataclass(frozen=True, slots=True)
class _Ended:
    code: int | None
    reason: str
    fatal: bool
    greeted: bool  # the hello was answered: the backoff starts over


class NotConnected(RuntimeError):
    """The session has no live connection right now."""


@final
class Session:
    """One room, one identity, many connections over time.

    Use ``open_session``; read ``events`` until it ends (after a ``Stopped``).
    """

    def __init__(
        self,
        link: InviteLink,
        conversation: Conversation,
        events: trio.MemorySendChannel[Event],
        backoff: Backoff,
        announce: bool = False,
    ) -> None:
        self._link = link
        self._announce = announce
        self.conversation: Final = conversation
        self._events = events
        self._backoff = backoff
        self._ws: WebSocketConnection | None = None
        self._greeted = False
        self._resend_due = False  # a resend after ``rate_limited`` is already scheduled
        self.connected = trio.Event()  # set once; see ``is_connected`` for now
        self._progress = trio.Event()  # set and replaced after every server frame

    @property
    def client_id(self) -> ClientId:
        return self.conversation.client_id

    @property
    def is_connected(self) -> bool:
        """Whether a connection is open and its hello was answered."""
        return self._ws is not None and self._greeted

    async def send_text(self, text: str) -> str:
        """Encrypt and send ``text``; return its ``mid``.

        The message is pending until its echo (a ``ChatMessage`` with this ``mid``
        and ``own``) arrives; if the connection drops first, it is sent again on the
        next connection.

        Error handling: raises ``ValueError`` for a message that cannot be sent.
        """
        mid, frame = self.conversation.compose(text)
        await self._send(frame)
        return mid

    async def wait_all_echoed(self) -> None:
        """Wait until the server has echoed every message we sent (bound it yourself)."""
        while self.conversation.pending:
            await self._progress.wait()

    async def clear_history(self) -> None:
        """Ask the server to clear the room's history.

        Error handling: raises ``NotConnected`` while the session is reconnecting.
        """
        if not self.is_connected:
            raise NotConnected("not connected: the history was not cleared")
        await self._send(self.conversation.clear_frame())

    async def _send(self, frame: str) -> None:
        ws = self._ws
        if ws is None or not self._greeted:
            return  # pending messages go out after the next hello
        # On a close the reader reconnects, and pending messages are sent again.
        with contextlib.suppress(ConnectionClosed):
            await ws.send_message(frame)

    async def run(self) -> None:
        """Connect and reconnect until a fatal close; report it, close ``events``."""
        # A sync close: an awaited one would raise Cancelled under cancellation and
        # hide whatever exception is on its way out.
        with self._events:
            attempt = 0
            while True:
                ended = await self._connect_once()
                if ended.fatal:
                    await self._events.send(Stopped(ended.code, ended.reason))
                    return
                attempt = 1 if ended.greeted else attempt + 1
                delay = self._backoff.delay(attempt)
                await self._events.send(Disconnected(ended.code, ended.reason, delay))
                await trio.sleep(delay)

    async def _connect_once(self) -> _Ended:
        url = self._link.ws_url(self.client_id)
        try:
            async with open_room_socket(url) as ws:
                return await self._converse(ws)
        except ConnectionRejected as exc:
            fatal = 400 <= exc.status_code < 500
            return _Ended(None, f"the server refused the connection (HTTP {exc.status_code})",
                          fatal, greeted=False)  # fmt: skip
        except HandshakeError as exc:
            cause = exc.__cause__ or exc
            return _Ended(None, f"cannot reach the server: {_describe(cause)}", False, False)
        except ConnectionClosed as exc:  # raised by the closing handshake itself
            return self._closed(exc)
        finally:
            self._ws = None

    async def _converse(self, ws: WebSocketConnection) -> _Ended:
        self._greeted = False
        self._resend_due = False
        self._ws = ws
        ended: _Ended | None = None
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as reading:
                nursery.start_soon(self._heartbeat, ws, reading)
                ended = await self._read(ws, nursery)
            nursery.cancel_scope.cancel()
        if ended is None:  # only the heartbeat cancels ``reading``
            return _Ended(None, "the server stopped answering", False, self._greeted)
        return ended

    async def _read(self, ws: WebSocketConnection, nursery: trio.Nursery) -> _Ended:
        try:
            await ws.send_message(self.conversation.hello())
            while True:
                await self._handle(await ws.get_message(), ws, nursery)
        except ConnectionClosed as exc:
            return self._closed(exc)

    def _closed(self, exc: ConnectionClosed) -> _Ended:
        code = exc.reason.code if exc.reason is not None else None
        fatal = code is not None and code in _FATAL
        if fatal:
            assert code is not None  # noqa: S101  (for mypy)
            reason = _FATAL[code]
        elif code == CloseCode.GOING_AWAY:
            reason = "the server is restarting"
        else:
            detail = exc.reason.reason if exc.reason is not None else None
            reason = f"connection lost ({code}{': ' + detail if detail else ''})"
        return _Ended(code, reason, fatal, self._greeted)

    async def _handle(
        self, frame: str | bytes, ws: WebSocketConnection, nursery: trio.Nursery
    ) -> None:
        for event in self.conversation.receive(frame):
            if isinstance(event, Presence) and event.event == "connected":
                self._greeted = True
                self.connected.set()
                # The history came first, so what the server has is no longer pending.
                for resend in self.conversation.resend_frames():
                    await ws.send_message(resend)
                if self._announce:
                    await ws.send_message(self.conversation.profile_frame())
            elif (
                isinstance(event, Presence)
                and event.event == "joined"
                and event.client_id != self.client_id
                and self._announce
            ):
                # The newcomer missed our earlier profile: signals are never stored.
                await ws.send_message(self.conversation.profile_frame())
            elif (
                isinstance(event, ServerError)
                and event.code in ("rate_limited", "unavailable")
                # One resend for a burst of refusals: each resend sends every pending
                # message, so one per refusal would multiply the load that was refused.
                and not self._resend_due
            ):
                self._resend_due = True
                nursery.start_soon(self._resend_later, ws)
            await self._events.send(event)
            if isinstance(event, Challenged):
                # A new room on a busy server: pay, then say hello again.
                await ws.send_message(self.conversation.hello(await solve(event)))
        self._progress.set()
        self._progress = trio.Event()

    async def _resend_later(self, ws: WebSocketConnection) -> None:
        await trio.sleep(RATE_RETRY_SECONDS)
        self._resend_due = False
        for frame in self.conversation.resend_frames():
            await ws.send_message(frame)

    async def _heartbeat(self, ws: WebSocketConnection, scope: trio.CancelScope) -> None:
        while True:
            await trio.sleep(PING_SECONDS)
            with trio.move_on_after(PONG_SECONDS) as wait:
                try:
                    await ws.ping()
                except ConnectionClosed:
                    return  # the reader reports it
            if wait.cancelled_caught:
                scope.cancel()
                return


async def solve(challenge: Challenged) -> bytes:
    """Find the proof for ``challenge``, in slices with a checkpoint between them.

    At the difficulties a server asks (docs/protocol.md) this takes at most seconds;
    the server's own timeout bounds it, and cancellation stops it between slices.
    """
    start = 0
    while (nonce := solve_some(challenge.challenge, challenge.bits, start, SLICE_HASHES)) is None:
        start += SLICE_HASHES
        await trio.lowlevel.checkpoint()
    return nonce


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0] if text else type(exc).__name__


@asynccontextmanager
async def open_session(
    link: InviteLink,
    client_id: ClientId,
    *,
    name: str | None = None,
    announce: bool = False,
    backoff: Backoff = Backoff(),  # frozen: sharing it is safe
) -> AsyncIterator[tuple[Session, trio.MemoryReceiveChannel[Event]]]:
    """Join the room of ``link`` as ``client_id``; yield the session and its events.

    With ``announce``, the session tells the room who it is (``name``, or no name)
    in a profile signal on connecting and whenever someone else joins.

    Resource handling: the connection task runs in a nursery owned by this context
    manager; leaving it cancels the task and closes the socket.

    Error handling: raises ``ValueError`` for a name that is too long. Network
    trouble is reported as events, never raised.
    """
    conversation = Conversation(RoomKeys(link.secret, link.room_id), client_id, name)
    send, receive = trio.open_memory_channel[Event](EVENT_BUFFER)
    session = Session(link, conversation, send, backoff, announce)
    with receive:  # closed without a checkpoint (see ``Session.run``)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            try:
                yield session, receive
            finally:
                nursery.cancel_scope.cancel()
