"""``Pipeline``: lean RESP2 connections for the shared rooms' scripts.

Every post is one script call, so its cost is paid per message. Through coredis a
call costs about 400 µs of the relay's CPU on the test machine (its request
objects, a writer and a reader task, several cancel scopes per call); a plain
request and reply over a Trio socket costs about 36 µs (docs/benchmarks.md). This
module does only what the scripts need: AUTH, SELECT, EVALSHA (with SCRIPT LOAD
after NOSCRIPT) and RESP2 replies, on a few connections that each carry one
request at a time.

Everything else (subscriptions, reads, Sentinel, which this connection does not
follow) stays with coredis. Error handling: a lost connection, a timeout or a
reply that says Valkey cannot serve now (``NOPERM``, ``NOREPLICAS``, ``READONLY``,
a refused login) raise ``Unreachable``, and the next call connects again; any
other error reply raises ``ErrorReply``.
"""

import hashlib
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Final, TypeAlias, final

import trio

from securechat.valkey.url import CONNECT_TIMEOUT_SECONDS, STREAM_TIMEOUT_SECONDS, ValkeyTarget

Reply: TypeAlias = bytes | int | list["Reply"] | None

MAX_REPLY_BYTES: Final = 64 * 1024 * 1024  # one reply; a history is far smaller
SCRIPT_CONNECTIONS: Final = 4  # scripts in flight at once per process; more wait their turn
READ_BYTES: Final = 65536
# Error replies that mean "not now", not "a bug": answered like a lost connection.
_NOT_NOW: Final = (b"NOPERM", b"NOREPLICAS", b"READONLY", b"WRONGPASS", b"NOAUTH", b"LOADING")


class Unreachable(Exception):
    """Valkey cannot serve this now; try again later."""


class ErrorReply(Exception):
    """Valkey answered with an error (a script's own, say)."""


@final
class Script:
    """A Lua script and its SHA-1, as EVALSHA names it."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source.encode()
        self.sha = hashlib.sha1(self.source, usedforsecurity=False).hexdigest().encode()


def command(*parts: str | bytes | int) -> bytes:
    """One request in RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode()
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


def parse(buffer: bytes | bytearray, start: int = 0) -> tuple[Reply | ErrorReply, int] | None:
    """The reply at ``start`` and where the next begins, or None if it is not all there.

    Error replies come back as ``ErrorReply`` values (not raised): a pipelined
    caller gets its own. Raises ``Unreachable`` for bytes that are not RESP2.
    """
    end = buffer.find(b"\r\n", start)
    if end < 0:
        return None
    kind, line, after = buffer[start : start + 1], bytes(buffer[start + 1 : end]), end + 2
    if kind == b"+":
        return line, after
    if kind == b"-":
        return ErrorReply(line.decode("utf-8", "replace")), after
    if kind == b":":
        return int(line), after
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, after
        if size > MAX_REPLY_BYTES:
            raise Unreachable("a reply larger than MAX_REPLY_BYTES")
        if len(buffer) < after + size + 2:
            return None
        return bytes(buffer[after : after + size]), after + size + 2
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, after
        items: list[Reply] = []
        for _ in range(count):
            parsed = parse(buffer, after)
            if parsed is None:
                return None
            item, after = parsed
            if isinstance(item, ErrorReply):
                return item, after  # an error inside an array: the whole reply fails
            items.append(item)
        return items, after
    raise Unreachable(f"not a RESP reply: {bytes(kind)!r}")


@final
class _Connection:
    """One logged-in connection, used by one caller at a time."""

    __slots__ = ("buffer", "stream")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def request(self, data: bytes) -> Reply | ErrorReply:
        await self.stream.send_all(data)
        return await _read_one(self.stream, self.buffer)


@final
class Pipeline:
    """Up to ``SCRIPT_CONNECTIONS`` connections, each carrying one request at a time.

    A caller takes an idle connection (or opens one), sends its request and reads
    its reply itself: no task in between, the cheapest round trip Trio has. A
    connection whose request was cut short (a timeout, a cancellation, a lost
    peer) is closed, never reused, so no reply can reach the wrong caller.

    Resource handling: ``close`` (``open_pipeline``'s exit) closes the idle ones.
    """

    def __init__(self, target: ValkeyTarget) -> None:
        self._target = target
        self._idle: list[_Connection] = []
        self._slots = trio.Semaphore(SCRIPT_CONNECTIONS)

    async def run(
        self, script: Script, keys: Sequence[str], args: Sequence[str | bytes | int]
    ) -> Reply:
        """EVALSHA ``script``; SCRIPT LOAD it first if Valkey does not know it yet."""
        request = command(b"EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            return await self.call(request)
        except ErrorReply as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        await self.call(command(b"SCRIPT", b"LOAD", script.source))
        return await self.call(request)

    async def call(self, request: bytes) -> Reply:
        """Send one request and read its reply (raises ``ErrorReply``, ``Unreachable``)."""
        try:
            self._slots.acquire_nowait()  # no scheduler pass while a connection is free
        except trio.WouldBlock:
            await self._slots.acquire()
        try:
            connection = self._idle.pop() if self._idle else await self._connect()
            done = False
            try:
                with trio.fail_after(STREAM_TIMEOUT_SECONDS):
                    reply = await connection.request(request)
                done = True
            except trio.TooSlowError:
                raise Unreachable("Valkey did not answer in time") from None
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise Unreachable(f"connection lost: {exc}") from None
            finally:
                if done:
                    self._idle.append(connection)
                else:
                    await _close(connection.stream)
        finally:
            self._slots.release()
        if isinstance(reply, ErrorReply):
            if str(reply).startswith(_NOT_NOW_TEXT):
                raise Unreachable(str(reply))
            raise reply
        return reply

    async def _connect(self) -> _Connection:
        try:
            with trio.fail_after(CONNECT_TIMEOUT_SECONDS):
                connection = _Connection(await self._open())
                for request in self._greeting():
                    reply = await connection.request(request)
                    if isinstance(reply, ErrorReply):
                        await _close(connection.stream)
                        raise Unreachable(str(reply))
        except (OSError, trio.BrokenResourceError, trio.TooSlowError) as exc:
            raise Unreachable(f"cannot connect: {exc}") from None
        return connection

    async def _open(self) -> trio.abc.Stream:
        target = self._target
        if target.socket is not None:
            return await trio.open_unix_socket(target.socket)
        assert target.host is not None  # noqa: S101  (a TCP target has one)
        stream: trio.abc.Stream = await trio.open_tcp_stream(target.host, target.port)
        if target.tls:
            context = ssl.create_default_context()  # the chain and the host name checked
            stream = trio.SSLStream(stream, context, server_hostname=target.host)
            await stream.do_handshake()
        return stream

    def _greeting(self) -> list[bytes]:
        target, out = self._target, []
        if target.password is not None:
            user = [target.username] if target.username else []
            out.append(command(b"AUTH", *user, target.password))
        if target.db:
            out.append(command(b"SELECT", target.db))
        return out

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await _close(connection.stream)


_NOT_NOW_TEXT: Final = tuple(code.decode() for code in _NOT_NOW)


async def _read_one(stream: trio.abc.Stream, buffer: bytearray) -> Reply | ErrorReply:
    while (parsed := parse(buffer)) is None:
        data = await stream.receive_some(READ_BYTES)
        if not data:
            raise Unreachable("connection closed")
        buffer += data
    reply, used = parsed
    del buffer[:used]
    return reply


async def _close(stream: trio.abc.Stream) -> None:
    with trio.move_on_after(1) as scope:
        scope.shield = True
        await trio.aclose_forcefully(stream)


@asynccontextmanager
async def open_pipeline(target: ValkeyTarget) -> AsyncIterator[Pipeline]:
    """A pipeline that connects at its first call (and again after a loss)."""
    pipeline = Pipeline(target)
    try:
        yield pipeline
    finally:
        await pipeline.close()
