"""The attack benchmark's machinery: a securechat server it owns, and clients that misbehave.

``serving`` starts ``securechat serve`` at its defaults as a child process on
127.0.0.1, with its output in a file (so the benchmark can count log bytes and
read every line) and its open-files limit as the machine's default, and kills it
by PID at the end. ``Attacker`` is one picows client that says hello, answers a
proof-of-work challenge when the budget allows, and turns every way the server
can refuse it (an HTTP status, a close code, silence) into a counted reason.
"""

import asyncio
import base64
import contextlib
import os
import re
import resource
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import msgspec
from picows import (
    WSError,
    WSFrame,
    WSInvalidStatusError,
    WSListener,
    WSMsgType,
    WSParsedURL,
    WSTransport,
)
from picows import ws_connect as picows_connect

from bench import hostile
from bench.servers import REPO_ROOT

START_TIMEOUT_S: Final = 30.0  # a cold Python import on a busy machine
STOP_TIMEOUT_S: Final = 10.0
START_POLL_S: Final = 0.05  # how often the log file is read while the server starts
READ_BUFFER_BYTES: Final = 4096  # picows grows it on demand; 10,000 idle clients stay small
MAX_FRAME_BYTES: Final = 1024 * 1024  # the largest server frame accepted: a full history
SOLVE_MAX_BITS: Final = 28  # harder challenges are given up: 2**28 hashes is minutes here
SOLVE_TRIES_FACTOR: Final = 16  # tries per challenge, in multiples of the expected 2**bits
SERVING: Final = re.compile(rb"serving on (http://[0-9.]+:[0-9]+)")
WORD: Final = re.compile(r"[A-Za-z0-9_-]+")
STARTUP_LINES: Final = ("serving on", "Running on")  # the bind address, not a peer's
EMFILE_MARKS: Final = ("EMFILE", "Too many open files", "Errno 24")
CLOCK_TICKS_PER_S: Final = os.sysconf("SC_CLK_TCK")

# Linux's and systemd's default soft limit: what a server has unless it raises its own.
SERVER_OPEN_FILES: Final = 1024


class Refused(Exception):
    """The server turned a client away; ``reason`` is how, e.g. ``close 4503``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class AttackServer:
    """A running ``securechat serve`` and where its data and its log are."""

    process: asyncio.subprocess.Process
    base_url: str
    data_dir: Path
    log_path: Path
    limit_note: str = f"{SERVER_OPEN_FILES}, as started"
    exits: list[float] = field(default_factory=list)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.base_url.removeprefix("http://").rsplit(":", 1)
        return host, int(port)

    def alive(self) -> bool:
        return self.process.returncode is None

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for pid {self.process.pid}")

    def data_bytes(self) -> int:
        """The data dir's size: the database, its WAL and shared-memory files."""
        return sum(path.stat().st_size for path in self.data_dir.rglob("*") if path.is_file())

    def log_bytes(self) -> int:
        return self.log_path.stat().st_size

    def log_lines(self, since: int = 0) -> list[str]:
        with self.log_path.open("rb") as log:
            log.seek(since)
            return log.read().decode(errors="replace").splitlines()

    def open_fds(self) -> int:
        """Descriptors the server holds open right now."""
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def open_files(self) -> tuple[int, int]:
        """The server's RLIMIT_NOFILE now: (soft, hard)."""
        soft, hard = resource.prlimit(self.process.pid, resource.RLIMIT_NOFILE)
        return soft, hard

    def cpu_seconds(self) -> float:
        """User plus system CPU time of every thread of the server so far."""
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S

    def ensure_open_files(self, wanted: int) -> None:
        """Raise the server's soft open-files limit to ``wanted`` unless it did so itself."""
        soft, hard = resource.prlimit(self.process.pid, resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY or soft > SERVER_OPEN_FILES:
            self.limit_note = f"{soft}, raised by the server itself"
        if soft == resource.RLIM_INFINITY or soft >= wanted:
            return
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.prlimit(self.process.pid, resource.RLIMIT_NOFILE, (new, hard))
        self.limit_note = f"{soft} raised to {new} by the benchmark (prlimit)"


@dataclass(frozen=True, slots=True)
class LogCheck:
    """What a server's log held: its size, and lines naming a room or an address."""

    lines: int
    bytes: int
    room_id_lines: int
    address_lines: int
    emfile_lines: int

    @classmethod
    def of(cls, server: AttackServer, rooms: Iterable[str], since: int = 0) -> "LogCheck":
        known = set(rooms)
        lines = server.log_lines(since)
        host = server.address[0]
        return cls(
            lines=len(lines),
            bytes=server.log_bytes() - since,
            room_id_lines=sum(1 for line in lines if any(w in known for w in WORD.findall(line))),
            address_lines=sum(
                1 for line in lines if host in line and not any(s in line for s in STARTUP_LINES)
            ),
            emfile_lines=sum(1 for line in lines if any(m in line for m in EMFILE_MARKS)),
        )


@contextlib.asynccontextmanager
async def serving(
    *extra: str, open_files_soft: int | None = None, open_files_hard: int | None = None
) -> AsyncIterator[AttackServer]:
    """Start ``securechat serve`` at its defaults plus ``extra``; kill it by PID after.

    The server's soft open-files limit is SERVER_OPEN_FILES, or ``open_files_soft``,
    whatever this process raised its own to: a server that needs more must raise it.
    ``open_files_hard`` also lowers the hard limit (soft and hard both become it,
    as ``prlimit --nofile=N:N`` would), so the server cannot raise its own.

    Resource handling: the child is killed and reaped and its directory removed
    in ``finally``, whatever happens.
    """
    wanted = SERVER_OPEN_FILES if open_files_soft is None else open_files_soft

    def limit_open_files() -> None:  # runs in the child, before exec
        if open_files_hard is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files_hard, open_files_hard))
            return
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    with tempfile.TemporaryDirectory(prefix="bench-attack-") as scratch:
        data_dir, log_path = Path(scratch) / "data", Path(scratch) / "server.log"
        command = [
            sys.executable,
            "-m",
            "securechat",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            *extra,
        ]
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                cwd=REPO_ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                preexec_fn=limit_open_files,
            )
        try:
            yield await _wait_serving(process, data_dir, log_path)
        finally:
            if process.returncode is None:
                process.kill()
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await process.wait()


def _tail(log_path: Path) -> str:
    return "\n".join(log_path.read_bytes().decode(errors="replace").splitlines()[-20:])


def _serving_url(log_path: Path) -> str | None:
    match = SERVING.search(log_path.read_bytes())
    return None if match is None else match.group(1).decode()


async def _wait_serving(
    process: asyncio.subprocess.Process, data_dir: Path, log_path: Path
) -> AttackServer:
    async with asyncio.timeout(START_TIMEOUT_S):
        while (url := _serving_url(log_path)) is None:
            if process.returncode is not None:
                raise RuntimeError(f"the server exited first:\n{_tail(log_path)}")
            await asyncio.sleep(START_POLL_S)
    return AttackServer(process, url, data_dir, log_path)


# ----- proof of work -------------------------------------------------------------------


@dataclass
class Solver:
    """The attacker's proof-of-work budget: CPU seconds it will spend, shared by its clients."""

    budget_s: float
    spent_s: float = 0.0
    solved: int = 0
    gave_up: int = 0

    async def solve(self, challenge: bytes, bits: int) -> bytes | None:
        if bits > SOLVE_MAX_BITS or self.spent_s >= self.budget_s:
            self.gave_up += 1
            return None
        started = time.perf_counter()
        tries = SOLVE_TRIES_FACTOR << bits
        nonce = await asyncio.to_thread(hostile.solve, challenge, bits, tries)
        self.spent_s += time.perf_counter() - started
        if nonce is None:
            self.gave_up += 1
        else:
            self.solved += 1
        return nonce


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# ----- clients ------------------------------------------------------------------------


class Challenge(msgspec.Struct, tag="challenge"):
    challenge: str
    bits: int


class Message(msgspec.Struct, tag="message"):
    pass


class History(msgspec.Struct, tag="history"):
    pass


class System(msgspec.Struct, tag="system"):
    event: str


class Error(msgspec.Struct, tag="error"):
    code: str


Envelope = Challenge | Message | History | System | Error
DECODER: Final[msgspec.json.Decoder[Envelope]] = msgspec.json.Decoder(Envelope)


def message_frame(ciphertext_bytes: int) -> bytes:
    """A ``message`` envelope with random IV and ciphertext of this many decoded bytes."""
    iv, ciphertext = _b64url(os.urandom(12)), _b64url(os.urandom(ciphertext_bytes))
    return msgspec.json.encode({"type": "message", "iv": iv, "ciphertext": ciphertext})


class Attacker(WSListener):
    """One client: hello on connect (unless ``hello`` is False), then whatever it is told.

    ``upgraded`` resolves at the 101, ``connected`` at ``system``/``connected``,
    ``answered`` at the server's first frame; ``echoed`` once ``expect(n)``
    messages came back. A refusal fails every pending one with ``Refused``.
    ``gone`` resolves when the connection has ended, however it ended.
    """

    def __init__(self, auth: str, tally: Counter[str], solver: Solver, *, hello: bool = True):
        super().__init__()
        loop = asyncio.get_running_loop()
        self.auth = auth
        self.tally = tally
        self.solver = solver
        self.hello = hello
        self.transport: WSTransport | None = None
        self.upgraded: asyncio.Future[None] = loop.create_future()
        self.connected: asyncio.Future[None] = loop.create_future()
        self.answered: asyncio.Future[None] = loop.create_future()
        self.echoed: asyncio.Future[None] = loop.create_future()
        self.gone: asyncio.Future[None] = loop.create_future()
        self.echoes = 0
        self.wanted_echoes = 0
        self.proofs = 0  # challenges this client solved and answered
        self.closing = False
        self.close_code: int | None = None  # the server's, if it sent one
        self._tasks: set[asyncio.Task[None]] = set()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.upgraded.set_result(None)
        if self.hello:
            self.send(msgspec.json.encode({"type": "hello", "auth": self.auth}))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if not self.answered.done():
            self.answered.set_result(None)
        if frame.msg_type is WSMsgType.CLOSE:
            self.close_code = frame.get_close_code().value
            self._fail(f"close {self.close_code}")
            return
        if frame.msg_type is not WSMsgType.TEXT:
            return
        try:
            envelope = DECODER.decode(frame.get_payload_as_bytes())
        except msgspec.DecodeError:
            return  # an envelope this benchmark has no use for
        match envelope:
            case System(event="connected"):
                if not self.connected.done():
                    self.connected.set_result(None)
            case Message():
                self.echoes += 1
                if self.echoes >= self.wanted_echoes and not self.echoed.done():
                    self.echoed.set_result(None)
            case Challenge(challenge=challenge, bits=bits):
                task = asyncio.get_running_loop().create_task(self._prove(challenge, bits))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            case Error(code=code):
                self.tally[f"error {code}"] += 1
            case History() | System():
                pass

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._fail("dropped")
        if not self.gone.done():
            self.gone.set_result(None)

    async def _prove(self, challenge: str, bits: int) -> None:
        nonce = await self.solver.solve(_unb64url(challenge), bits)
        if nonce is None:
            self._fail("challenge given up")  # counted by `join`, as every refusal
            self.close()
            return
        self.tally["challenge solved"] += 1
        self.proofs += 1
        hello = {"type": "hello", "auth": self.auth, "proof": _b64url(nonce)}
        self.send(msgspec.json.encode(hello))

    def _fail(self, reason: str) -> None:
        if self.closing:
            return
        for future in (self.upgraded, self.connected, self.answered, self.echoed):
            if not future.done():
                future.set_exception(Refused(reason))
                future.exception()  # retrieved: a refusal nobody awaits is not an error

    def expect(self, echoes: int) -> None:
        """Resolve a fresh ``echoed`` once ``echoes`` more messages came."""
        self.wanted_echoes = self.echoes + echoes
        if self.echoed.done() and self.echoed.exception() is None:
            self.echoed = asyncio.get_running_loop().create_future()

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.send(WSMsgType.TEXT, data)

    def close(self) -> None:
        self.closing = True
        for task in self._tasks:
            task.cancel()
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.send_close()
            self.transport.disconnect()


SocketFactory = Callable[[WSParsedURL], Awaitable[socket.socket]]


def from_source(source: str) -> SocketFactory:
    """A picows ``socket_factory`` connecting from the local address ``source``.

    Any 127.0.0.0/8 address is on the loopback interface, so the server sees a
    different source for each one without any setup.
    """

    async def connect(url: WSParsedURL) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.bind((source, 0))
            await asyncio.get_running_loop().sock_connect(sock, (url.host, url.port))
        except BaseException:
            sock.close()
            raise
        return sock

    return connect


def ws_url(base_url: str, room: str, client: str) -> str:
    return f"{base_url.replace('http://', 'ws://', 1)}/ws/{room}?client={client}"


async def join(
    base_url: str,
    room: str,
    client: str,
    attacker: Attacker,
    timeout_s: float,
    *,
    until: str = "connected",
    socket_factory: SocketFactory | None = None,
) -> bool:
    """Connect ``attacker`` and wait for ``until`` (``upgraded`` or ``connected``).

    Error handling: every refusal is counted in the attacker's tally by reason
    (``http 503``, ``close 4503``, ``timeout``, ``dropped``, an exception's
    name) and the client closed; the caller sees only False.
    """
    waited = attacker.upgraded if until == "upgraded" else attacker.connected
    try:
        async with asyncio.timeout(timeout_s):
            await picows_connect(
                lambda: attacker,
                ws_url(base_url, room, client),
                websocket_handshake_timeout=timeout_s,
                read_buffer_init_size=READ_BUFFER_BYTES,
                max_frame_size=MAX_FRAME_BYTES,
                socket_factory=socket_factory,
            )
            await waited
    except Refused as refused:
        reason = refused.reason
    except WSInvalidStatusError as refused:
        response = refused.response
        reason = "http ?" if response is None else f"http {response.status.value}"
    except TimeoutError:
        reason = "timeout"
    except (OSError, WSError) as error:
        reason = type(error).__name__
    else:
        return True
    attacker.tally[reason] += 1
    attacker.close()
    return False


async def join_all(
    base_url: str, attackers: Sequence[tuple[str, Attacker]], concurrency: int, timeout_s: float
) -> int:
    """Join each (room, attacker), ``concurrency`` at a time; how many got `connected`."""
    gate = asyncio.Semaphore(concurrency)

    async def one(room: str, attacker: Attacker) -> bool:
        async with gate:
            return await join(base_url, room, hostile.client_id(), attacker, timeout_s)

    return sum(await asyncio.gather(*(one(room, attacker) for room, attacker in attackers)))


def close_all(attackers: Iterable[Attacker]) -> None:
    for attacker in attackers:
        attacker.close()


def refusals(tally: Counter[str]) -> str:
    """``close 4503: 12, http 503: 3``, most frequent first, or ``none``."""
    return ", ".join(f"{reason}: {count:,}" for reason, count in tally.most_common()) or "none"
