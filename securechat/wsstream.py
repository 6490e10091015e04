"""Hypercorn's WebSocket stream, hardened, and the frame sink it offers the app.

Part of the transport boundary (securechat/boundary.py installs the class where
Hypercorn looks it up, for HTTP/1.1 and HTTP/2):

- bytes before the handshake is accepted get a 400 without racing the app's
  accept (pgjones/hypercorn#225);
- a socket silent after a ping is closed, and one task (``Pinger``) pings every
  socket of a server, not one task per socket;
- an accepted HTTP/1.1 WebSocket offers the app a ``FrameSink``
  (securechat/outbox.py) in its scope's extensions, so relayed frames skip the
  per-frame ASGI, wsproto and h11 layers and, when the socket can take them, the
  lock and the checkpoint of a waiting write.
"""

import contextvars
import math
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol, final

import trio
from hypercorn.events import Event, RawData
from hypercorn.protocol.events import Body, Data, StreamClosed
from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
from hypercorn.typing import WebsocketAcceptEvent
from wsproto.connection import ConnectionState
from wsproto.events import Ping
from wsproto.frame_protocol import CloseReason

from securechat.limits import PONG_DEADLINE_MIN_SECONDS
from securechat.outbox import FRAMES_EXTENSION


class Connection(Protocol):
    """The TCP connection under a stream, as the boundary's TCPServer serves it."""

    def write_nowait(self, data: bytes) -> bool: ...

    @property
    def holds_unsent(self) -> bool: ...

    async def protocol_send(self, event: Event) -> None: ...


# The TCP connection the current task serves, set by the boundary's TCPServer for
# each connection; the tasks it starts (Hypercorn's app task among them) inherit it.
SERVING: Final = contextvars.ContextVar[Connection]("securechat_serving")


@final
class HardenedWSStream(WSStream):
    _heard_at: float = -math.inf  # trio time the last bytes arrived from the peer
    _waiting_since: float | None = None  # when the oldest unanswered ping went out

    async def handle(self, event: Event) -> None:  # type: ignore[override]
        if isinstance(event, Body | Data) and not self.closed:
            if not self.handshake.accepted:
                await self._refuse_early_data()
                return
            self._heard_at = trio.current_time()
        await super().handle(event)  # type: ignore[arg-type]

    async def _refuse_early_data(self) -> None:
        # Bytes before the handshake is accepted get a 400, as in Hypercorn. But
        # Hypercorn marked the stream closed only after that response, so the
        # app's accept slipped in at a checkpoint and wrote a 101 into a finished
        # response: h11 raised and the server exited (pgjones/hypercorn#225).
        # Closed first, the late accept is a no-op; the app is told the socket
        # went away, and the connection ends instead of lingering.
        self.closed = True
        await self._send_error_response(400)
        if self.app_put is not None:
            await self.app_put(
                {"type": "websocket.disconnect", "code": CloseReason.ABNORMAL_CLOSURE.value}
            )
        await self.send(StreamClosed(stream_id=self.stream_id))

    async def _send_pings(self) -> None:
        """Hand the socket to the server's ``Pinger``, or else ping it from this task.

        Hypercorn starts this task for every socket when pings are on (and only
        then); with a ``Pinger`` in the config it ends at once, and one task pings
        every socket instead of one sleeping task per socket.
        """
        pinger = getattr(self.config, "pinger", None)
        if isinstance(pinger, Pinger):
            pinger.add(self)
            return
        interval = self.config.websocket_ping_interval
        if interval is None:
            return
        deadline = max(interval, PONG_DEADLINE_MIN_SECONDS)
        while self.ping(trio.current_time(), deadline):
            await self.context.sleep(interval)

    def ping(self, now: float, deadline: float) -> bool:
        """Ping the peer, or close the socket if a ping has gone unanswered for ``deadline``.

        Hypercorn pings but never waits for a pong. Any bytes from the peer count
        as an answer; silence for ``deadline`` after a ping closes the connection,
        and the app sees the socket go away. The ping and the close go out from
        the connection's own task group, so no socket's write waits for another's.
        Returns False once the socket is closed (or closing).
        """
        if self.closed:
            return False
        if self._waiting_since is None or self._heard_at >= self._waiting_since:
            self._waiting_since = now  # the last ping was answered (or there was none)
        elif now - self._waiting_since >= deadline:
            self._start(self.send, StreamClosed(stream_id=self.stream_id))
            return False
        return self._start(self._send_wsproto_event, Ping())

    def _start(self, send: Callable[[Any], Awaitable[None]], event: object) -> bool:
        """Send ``event`` from the connection's task group; False if the group has ended."""
        try:
            self.task_group.spawn(send, event)
        except RuntimeError:  # the connection is gone: nothing to ping or close
            return False
        return True

    async def _accept(self, message: WebsocketAcceptEvent) -> None:
        await super()._accept(message)
        tcp = SERVING.get(None)
        # Over HTTP/2 a WebSocket's bytes travel inside DATA frames: no sink there.
        if tcp is not None and self.scope["http_version"] != "2":
            extensions: dict[str, object] = self.scope["extensions"]  # type: ignore[assignment]
            extensions[FRAMES_EXTENSION] = _DirectSink(self, tcp)


@final
class Pinger:
    """One task that pings every accepted WebSocket of a server, and closes the silent.

    Hypercorn runs a ping task per socket, sleeping between pings: some 3.4 KiB
    per idle socket, and each lingers for up to an interval after its socket
    closed (holding up shutdown as long). Here the server's one task walks its
    sockets every ``interval``; a socket is forgotten as soon as nothing else
    holds it (a weak set), so closed sockets are not kept for the next round.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._deadline = max(interval, PONG_DEADLINE_MIN_SECONDS)
        self._streams: weakref.WeakSet[HardenedWSStream] = weakref.WeakSet()

    def add(self, stream: HardenedWSStream) -> None:
        self._streams.add(stream)

    async def run(self) -> None:
        while True:
            await trio.sleep(self.interval)
            now = trio.current_time()
            for stream in list(self._streams):
                if not stream.ping(now, self._deadline):
                    self._streams.discard(stream)


@final
class _DirectSink:
    """The ``FrameSink`` of an accepted HTTP/1.1 WebSocket: its frames, as bytes, on the socket.

    The stream's own state still rules: once a close frame went either way, or
    the stream closed, frames are dropped, as Hypercorn drops the app's sends.
    """

    __slots__ = ("_stream", "_tcp")

    def __init__(self, stream: HardenedWSStream, tcp: Connection) -> None:
        self._stream = stream
        self._tcp = tcp

    def _open(self) -> bool:
        stream = self._stream
        return (
            not stream.closed
            and stream.state is ASGIWebsocketState.CONNECTED
            and stream.connection.state is ConnectionState.OPEN
        )

    def write_nowait(self, frame: bytes) -> bool:
        return not self._open() or self._tcp.write_nowait(frame)

    @property
    def holds_unsent(self) -> bool:
        return self._tcp.holds_unsent

    async def send(self, frame: bytes) -> None:
        if self._open():
            await self._tcp.protocol_send(RawData(frame))

    async def flush(self) -> None:
        await self._tcp.protocol_send(RawData(b""))
