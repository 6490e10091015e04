"""Opening a room's WebSocket with trio-websocket, owning the TCP stream ourselves.

``open_websocket_url`` leaves the TCP socket open when the *server* closes the
WebSocket first (trio-websocket 0.12 waits for the server's TCP close, then never
closes its own end), which is exactly how every close code reaches this client.
So this module opens the stream, hands it to ``wrap_client_stream``, and closes it
itself: one socket per connection, always released.
"""

import math
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final
from urllib.parse import urlsplit

import trio
from trio_websocket import (
    ConnectionRejected,
    ConnectionTimeout,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
)

CONNECT_SECONDS: Final = 10.0  # TCP, TLS and the WebSocket handshake, each
CLOSE_SECONDS: Final = 2.0  # the close handshake; past it the socket is just dropped
CANCELLED_CLOSE_SECONDS: Final = 0.05  # room to send our close frame while cancelled
MAX_FRAME_CHARS: Final = 1024 * 1024  # larger server frames close the socket with 1009

Stream = trio.SocketStream | trio.SSLStream[trio.SocketStream]


@asynccontextmanager
async def open_room_socket(url: str) -> AsyncIterator[WebSocketConnection]:
    """Connect to a ``ws://`` or ``wss://`` URL; yield the open WebSocket.

    Resource handling: the TCP stream and the WebSocket's reader task are closed
    when the context exits, whoever closed the WebSocket first.

    Error handling: raises ``ConnectionRejected`` for an HTTP refusal (400, 403),
    ``ConnectionTimeout`` when a step takes over ``CONNECT_SECONDS``, and
    ``HandshakeError`` (caused by the ``OSError``) when the server is unreachable.
    """
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    resource = parts.path + (f"?{parts.query}" if parts.query else "")
    host_header = host if port == (443 if secure else 80) else f"{parts.netloc}"
    stream = await _connect(host, port, secure)
    rejected: ConnectionRejected | None = None
    timed_out = False
    try:
        try:
            async with trio.open_nursery() as nursery:
                try:
                    with trio.move_on_after(CONNECT_SECONDS) as handshake:
                        ws = await wrap_client_stream(
                            nursery, stream, host_header, resource, max_message_size=MAX_FRAME_CHARS
                        )
                    timed_out = handshake.cancelled_caught
                    if not timed_out:
                        try:
                            yield ws
                        finally:
                            await _close(ws)
                finally:
                    nursery.cancel_scope.cancel()  # the reader task, if the server never closed
        finally:
            # Forcefully: a plain ``aclose`` checkpoints, and under cancellation its
            # Cancelled would replace the exception on its way out.
            await trio.aclose_forcefully(stream)
    except* ConnectionRejected as group:
        # The refusal is raised by the reader task, so it arrives in a group.
        first = group.exceptions[0]
        assert isinstance(first, ConnectionRejected)  # noqa: S101  (for mypy)
        rejected = first
    if rejected is not None:
        raise rejected
    if timed_out:
        raise ConnectionTimeout


async def _close(ws: WebSocketConnection) -> None:
    """Close the WebSocket: a full handshake, or just our close frame when cancelled.

    Under cancellation the reader task is cancelled too, so the server's answer
    could never be read: waiting for it would only delay the exit.
    """
    cancelled = trio.current_effective_deadline() == -math.inf
    with trio.move_on_after(CANCELLED_CLOSE_SECONDS if cancelled else CLOSE_SECONDS) as scope:
        scope.shield = True
        await ws.aclose()


async def _connect(host: str, port: int, secure: bool) -> Stream:
    try:
        with trio.fail_after(CONNECT_SECONDS):
            if secure:
                return await trio.open_ssl_over_tcp_stream(
                    host, port, ssl_context=ssl.create_default_context(), https_compatible=True
                )
            return await trio.open_tcp_stream(host, port)
    except trio.TooSlowError:
        raise ConnectionTimeout from None
    except OSError as exc:
        raise HandshakeError from exc
