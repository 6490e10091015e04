"""The transport boundary: Hypercorn's per-connection code, hardened where input can hurt.

Hypercorn runs one ``TCPServer`` task per TCP connection, all in one nursery,
so an exception in any of them used to end the whole server. ``install``
replaces three of Hypercorn 0.18's classes with small subclasses; with a plain
Hypercorn ``Config`` (not a ``BoundaryConfig``) the caps, h2c refusal and
headers stay off and only the bug fixes apply (the send deadline among them).
Each change is tested in tests/test_attack_transport.py, the send deadline in
tests/test_attack_send.py.

- ``TCPServer`` (in ``hypercorn.trio.run``): a cap on open connections (over
  it: a 503, then close); frames written without waiting when the socket can
  take them (``write_nowait``), the rest of a partly taken one kept ahead of
  every later write; any exception of one connection is logged once per
  kind and closes that connection alone; EOF is no longer sent while another
  task sends (BusyResourceError); a cancelled close no longer leaves the
  socket open; a write the peer does not take within ``SEND_TIMEOUT_SECONDS``
  resets the connection instead of holding it for as long as the peer likes.
- ``H11Protocol`` (in ``hypercorn.protocol``): HTTP/2 over cleartext refused
  unless enabled; the security headers on every response, Hypercorn's own
  (400, 431, 501, ...) included.
- ``WSStream`` (in ``hypercorn.protocol.h11`` and ``.h2``): see
  securechat/wsstream.py.
"""

import contextlib
import logging
import socket
import struct
from typing import Final, final

import h11
import hypercorn.protocol
import hypercorn.protocol.h2
import hypercorn.protocol.h11
import hypercorn.trio.run
import hypercorn.trio.tcp_server
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.events import Closed, Event, RawData
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer
from hypercorn.typing import H11SendableEvent

from securechat.app_queue import LightTaskGroup
from securechat.capacity import ConnectionGauge
from securechat.counters import COUNTS
from securechat.failures import FailureLog
from securechat.headers import SECURITY_HEADERS
from securechat.limits import REFUSAL_SECONDS, SEND_TIMEOUT_SECONDS
from securechat.sockets import receive, send_nowait
from securechat.sources import Network, SourceLimiter, source_of
from securechat.startup import ListenError
from securechat.wsstream import SERVING, HardenedWSStream, Pinger

logger: Final = logging.getLogger("securechat.boundary")

_LINGER_OFF: Final = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close(2) sends a reset

_SECURITY: Final = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in SECURITY_HEADERS.items()]
_SECURITY_NAMES: Final = frozenset(name for name, _ in _SECURITY)
_BUSY_BODY: Final = b"503 Service Unavailable: too many connections, try again later\n"
BUSY_RESPONSE: Final = b"\r\n".join(
    [
        b"HTTP/1.1 503 Service Unavailable",
        b"content-type: text/plain; charset=utf-8",
        b"content-length: %d" % len(_BUSY_BODY),
        b"connection: close",
        b"retry-after: 5",
        *(name + b": " + value for name, value in _SECURITY),
        b"",
        _BUSY_BODY,
    ]
)  # the whole answer to a connection over the cap, built once


class BoundaryConfig(HypercornConfig):
    """Hypercorn's settings plus the boundary's, one per server (so counts are not shared)."""

    def __init__(
        self,
        gauge: ConnectionGauge,
        *,
        h2c: bool,
        peers: SourceLimiter | None = None,
        trusted_proxies: tuple[Network, ...] = (),
    ) -> None:
        super().__init__()
        self.gauge = gauge
        self.h2c = h2c
        self.failures = FailureLog()
        # TCP connections per direct peer; a trusted proxy's are not counted here (its
        # visitors are, per WebSocket, by their X-Forwarded-For source).
        self.peers = peers if peers is not None else SourceLimiter(0)
        self.trusted_proxies = trusted_proxies
        self.pinger: Pinger | None = None  # set with the ping interval; run by the server

    def create_sockets(self) -> Sockets:
        """Hypercorn's listening sockets; a bind that fails raises ``ListenError``."""
        try:
            return super().create_sockets()
        except OSError as exc:
            raise ListenError(", ".join(self.bind), exc) from exc


def install() -> None:
    """Put the boundary's classes where Hypercorn looks them up (idempotent)."""
    hypercorn.trio.run.TCPServer = _TCPServer  # type: ignore[attr-defined]
    hypercorn.trio.tcp_server.TaskGroup = LightTaskGroup  # type: ignore[attr-defined]
    hypercorn.protocol.H11Protocol = _H11Protocol  # type: ignore[attr-defined]
    hypercorn.protocol.h11.WSStream = HardenedWSStream  # type: ignore[attr-defined]
    hypercorn.protocol.h2.WSStream = HardenedWSStream  # type: ignore[attr-defined]


def with_security_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    kept = [(k, v) for k, v in headers if k.lower() not in _SECURITY_NAMES]
    return kept + _SECURITY


@final
class _TCPServer(TCPServer):
    # The rest of a frame the kernel took only in part: written before anything else.
    _unsent: bytes = b""

    async def run(self) -> None:
        """Serve one TCP connection; whatever it raises ends it alone.

        Error handling: an ``Exception`` from Hypercorn, h11, wsproto or the app
        (which Hypercorn would have let end the server) is counted, logged once
        per kind and closes the connection. ``trio.Cancelled`` and other
        ``BaseException`` propagate.
        """
        SERVING.set(self)  # for this connection's streams (the app's task inherits it)
        config = self.config
        if not isinstance(config, BoundaryConfig):
            await super().run()
            return
        admission = config.peers.try_admit(source_of(self._peer(), (), config.trusted_proxies))
        if admission is None:
            await self._refuse(config.gauge)
            return
        try:
            if not config.gauge.try_open():
                await self._refuse(config.gauge)
                return
            try:
                await super().run()
            except* Exception as group:  # noqa: BLE001 - the one broad catch: no input ends the server
                config.gauge.count_failure()
                config.failures.report(group)
                await trio.aclose_forcefully(self.stream)
            finally:
                config.gauge.close()
        finally:
            config.peers.release(admission)

    def _peer(self) -> str | None:
        """The direct peer's address, or None if the socket cannot tell (gone already)."""
        stream = getattr(self.stream, "transport_stream", self.stream)  # under TLS or not
        try:
            return str(stream.socket.getpeername()[0])
        except (OSError, AttributeError, IndexError):
            return None

    async def _read_data(self) -> None:
        # Hypercorn's loop, except that it lets go of each chunk once handled (its
        # own kept the last one, up to MAX_RECV, while waiting for the next, so every
        # idle socket held the last frame it was sent), and that a plain socket is
        # read without receive_some's second scheduler pass (see securechat/sockets.py).
        timeout = self.config.read_timeout
        stream: object = self.stream  # typed as TLS by Hypercorn, but plain TCP here
        plain = stream.socket if isinstance(stream, trio.SocketStream) else None
        while True:
            try:
                if plain is not None and timeout is None:
                    data: bytes | bytearray = await receive(plain)
                elif timeout is None:  # no cancel scope held by every idle socket
                    data = await self.stream.receive_some(MAX_RECV)
                else:
                    with trio.fail_after(timeout):
                        data = await self.stream.receive_some(MAX_RECV)
            except (trio.ClosedResourceError, trio.BrokenResourceError, trio.TooSlowError):
                break
            except OSError:  # reset by the peer, or closed under us: as a broken stream
                break
            end = data == b""
            await self.protocol.handle(RawData(bytes(data)))  # bytes(bytes) copies nothing
            del data
            if end:
                break
        await self.protocol.handle(Closed())

    async def _refuse(self, gauge: ConnectionGauge) -> None:
        """Answer a connection over the cap with 503 and close it.

        Resource handling: the descriptor is held at most ``REFUSAL_SECONDS``,
        and by at most ``REFUSALS_IN_FLIGHT`` refusals at once; beyond that the
        connection is closed unanswered. Reading the request first lets the
        close be a FIN, not a reset that could destroy the 503 on its way.
        """
        COUNTS.http_refusals += 1
        if not gauge.try_start_refusal():
            await trio.aclose_forcefully(self.stream)
            return
        try:
            with trio.move_on_after(REFUSAL_SECONDS):
                with trio.move_on_after(REFUSAL_SECONDS / 2):
                    await self.stream.receive_some()  # a request, if it came at once
                await self.stream.send_all(BUSY_RESPONSE)
                await self.stream.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError, AttributeError):
            pass  # gone already, or TLS (no send_eof): nothing more to say
        finally:
            gauge.end_refusal()
            await trio.aclose_forcefully(self.stream)

    async def protocol_send(self, event: Event) -> None:
        """Write raw bytes under the send lock, or abort a connection that takes too long.

        Hypercorn shields each write, rightly: a cancelled ``send_all`` leaves part
        of a frame on the wire, and the next write would continue from there. But
        the shield had no deadline, so a peer that stopped reading (a zero receive
        window) held the write, and every write queued behind the lock, the close
        frame included, for as long as it kept the TCP connection open; the app's
        tasks could not be cancelled out of it, nor could the server shut down.

        Error handling: a write not taken within ``SEND_TIMEOUT_SECONDS`` resets
        the connection (nothing more is written after the cut: later writes find
        the stream closed) and the protocol is told it closed, so the app and the
        connection's tasks end. A peer that went away is handled as in Hypercorn.
        """
        if not isinstance(event, RawData):
            await super().protocol_send(event)
            return
        async with self.send_lock:
            data, self._unsent = self._unsent + event.data, b""
            with trio.CancelScope(shield=True):
                sent = await self._send_or_abort(data)
            del data
            if not sent:
                await self.protocol.handle(Closed())

    def write_nowait(self, data: bytes) -> bool:
        """Write ``data`` now if nothing is being written or owed; False if it must wait.

        One non-blocking ``send(2)``, from the caller's task: no lock, no
        checkpoint. What the kernel does not take is kept in ``_unsent``, which
        the next write under the lock sends first, so bytes never interleave.
        Only a plain TCP socket is written this way (TLS goes through the lock).

        Error handling: a socket that is closed or broken takes the data and drops
        it (True); its reader sees the same failure and ends the connection.
        """
        stream: object = self.stream  # typed as TLS by Hypercorn, but plain TCP here
        if self.send_lock.locked() or self._unsent or not isinstance(stream, trio.SocketStream):
            return False
        sent = send_nowait(stream.socket, data)
        if sent is None:
            return False
        if sent < len(data):
            self._unsent = data[sent:]
        return True

    @property
    def holds_unsent(self) -> bool:
        return bool(self._unsent)

    async def _send_or_abort(self, data: bytes) -> bool:
        """Whether ``data`` was written; False if the peer is gone or was cut off now."""
        with trio.move_on_after(SEND_TIMEOUT_SECONDS):
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return False
            return True
        _reset_on_close(self.stream)
        await trio.aclose_forcefully(self.stream)  # wakes this connection's reader too
        return False

    async def _close(self) -> None:
        # Two fixes. Hypercorn sent EOF without the send lock, and send_eof
        # checkpoints while it owns the stream's send side: the ping task's
        # send_all then raised BusyResourceError, which ended the server. So EOF
        # is sent only when no send is under way (aclose ends that one anyway).
        # And the close is shielded: it is often called from the app's task,
        # which Quart-Trio cancels once the response is out, and a cancelled
        # close left a "Connection: close" socket open until the peer closed it.
        with trio.CancelScope(shield=True):  # neither call blocks: shutdown(2), close(2)
            if not self.send_lock.locked():
                self.send_lock.acquire_nowait()
                try:
                    await self.stream.send_eof()
                except (
                    trio.BrokenResourceError,
                    trio.BusyResourceError,
                    trio.ClosedResourceError,
                    AttributeError,  # a TLS stream has no send_eof
                ):
                    pass
                finally:
                    self.send_lock.release()
            await self.stream.aclose()


def _reset_on_close(stream: object) -> None:
    """Make closing ``stream`` drop its unsent bytes and reset the peer (SO_LINGER 0).

    A plain close leaves the socket in FIN-WAIT-1, the kernel still trying to
    deliver its send buffer (megabytes once autotuned) to a peer that keeps its
    window shut, until the kernel's own retries give up.
    """
    transport = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    if isinstance(transport, trio.SocketStream):
        with contextlib.suppress(OSError):  # closed already: nothing left to drop
            transport.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_OFF)


class _PriorKnowledgeRefused(Exception):
    """An HTTP/2 preface on a server that does not speak HTTP/2 over cleartext."""


class _GluedToUpgrade(Exception):
    """Bytes read together with a WebSocket upgrade request, before any 101."""


def _is_websocket_upgrade(request: h11.Request) -> bool:
    upgrade = connection = b""
    for name, value in request.headers:  # h11 gives lower-cased names
        if name == b"upgrade":
            upgrade = value.strip().lower()
        elif name == b"connection":
            connection = value.lower()
    tokens = {token.strip() for token in connection.split(b",")}
    return request.method.upper() == b"GET" and upgrade == b"websocket" and b"upgrade" in tokens


@final
class _H11Protocol(H11Protocol):
    async def handle(self, event: Event) -> None:
        try:
            await super().handle(event)
        except _PriorKnowledgeRefused:
            await self._send_error_response(505)  # HTTP Version Not Supported
            await self.send(Closed())
        except _GluedToUpgrade:
            await self._send_error_response(400)
            await self.send(Closed())

    async def _check_protocol(self, event: h11.Request) -> None:
        # A client must wait for the 101 before it sends frames (RFC 6455 section
        # 4.1), and an upgrade has no body. Refused here, before the app starts,
        # the answer is a 400 whatever the app's timing; bytes that come in a
        # later read, still before the 101, get the same from HardenedWSStream.
        if _is_websocket_upgrade(event) and self.connection.trailing_data[0]:
            raise _GluedToUpgrade
        config = self.config
        if not isinstance(config, BoundaryConfig) or config.h2c:
            await super()._check_protocol(event)
        elif event.method == b"PRI" and event.target == b"*" and event.http_version == b"2.0":
            raise _PriorKnowledgeRefused
        # Otherwise an ``Upgrade: h2c`` is ignored and the request is answered
        # over HTTP/1.1, as RFC 9113 section 3.2 lets a server do. One HTTP/2
        # connection would carry any number of sockets past the connection caps.

    async def _send_h11_event(self, event: H11SendableEvent) -> None:
        if isinstance(event, h11.Response) and isinstance(self.config, BoundaryConfig):
            event = h11.Response(
                status_code=event.status_code,
                headers=with_security_headers(list(event.headers)),
                reason=event.reason,
            )
        await super()._send_h11_event(event)
