"""Real deployments for the scale-out tests: one redis-server and N relays on 127.0.0.1.

A ``Deployment`` is a redis-server (``tests/valkey.py``: AOF on) and N ``securechat
serve --valkey URL`` processes, each on its own ephemeral port and data dir, each
writing what it prints to its own log file (read back when a test fails, and never
a pipe that a busy relay could fill). A test can ``kill -9`` any of them by its PID,
restart a relay on its port, and restart Valkey on the same port and AOF directory,
as an operator's supervisor would. ``stop`` ends every process it started, by PID.

The methods block (each for a bounded time): fixtures call them directly, tests
with clients open call the slow ones (the starts) in a thread so the clients'
tasks keep running. ``Listener`` and ``rejoin`` are the client side: a peer that
reads everything in the background, and a client that reconnects to whichever
relay of a list still answers.
"""

import http.client
import json
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any, Final

import trio
from trio_websocket import ConnectionClosed, HandshakeError

from tests.harness import UNPRICED, WAIT, Peer, Urls, connect, new_client_id
from tests.process import server_command
from tests.valkey import Valkey, start_valkey

RELAY_START_SECONDS: Final = 30.0  # a relay spends ~2 s of CPU importing; 3 at once share 2 cores
STOP_SECONDS: Final = 10.0  # a relay drains its sockets in ~1 s after SIGTERM
POLL_SECONDS: Final = 0.05  # how often a wait looks at a log file or a socket again
REJOIN_SECONDS: Final = 15.0  # how long a client goes on trying the relays of its list
MAX_BACKOFF_SECONDS: Final = 0.5  # the longest pause between two of its tries
# Closes after which a client tries again (docs/protocol.md): no close frame (the relay
# died), going away, the room failed, resynchronising, try again later.
RETRY_CLOSES: Final = frozenset({1001, 1006, 1011, 1012, 1013})
SERVING: Final = re.compile(rb"serving on (http://127\.0\.0\.1:[0-9]+)")

# What every test relay is started with, as make_config does for an in-process server:
# no pings (they only delay shutdown), quiet logs, new rooms free of proofs of work.
TEST_RELAY_OPTIONS: Final = (
    "--ping-interval", "0",
    "--log-level", "warning",
    "--new-rooms-burst", str(UNPRICED),
    "--source-new-rooms-burst", str(UNPRICED),
)  # fmt: skip


@dataclass
class Relay(Urls):
    """One ``securechat serve --valkey`` process; ``base`` is where it listens."""

    index: int
    directory: Path
    command: list[str]
    base: str = ""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log_offset: int = 0

    @property
    def log_path(self) -> Path:
        return self.directory / "relay.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def spawn(self) -> None:
        """Start the process (on its old port if it had one); ``wait_serving`` waits for it."""
        assert not self.running, f"relay {self.index} is running already"
        port = self.port if self.base else 0
        self.directory.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [*self.command, "--port", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def wait_serving(self, deadline: float) -> None:
        """Block until the process says where it listens (by ``deadline``, monotonic)."""
        assert self.process is not None
        while (found := SERVING.search(self._new_output())) is None:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"relay {self.index} did not start:\n{self.log_tail()}")
            time.sleep(POLL_SECONDS)
        base = found.group(1).decode()
        assert not self.base or base == self.base, (self.base, base)
        self.base = base

    def kill(self) -> None:
        """``kill -9`` by PID, then reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=STOP_SECONDS)

    def terminate(self) -> int | None:
        """SIGTERM by PID (the relay drains and exits 0); SIGKILL if it outstays the bound."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def log_tail(self, chars: int = 3000) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_bytes()[-chars:].decode(errors="replace")

    def _new_output(self) -> bytes:
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            return log.read()


@dataclass
class Deployment:
    """A redis-server and the relays that share it; every process is stopped by ``stop``."""

    directory: Path
    valkey: Valkey
    relays: list[Relay]

    @property
    def valkey_directory(self) -> Path:
        return self.directory / "valkey"

    def kill_valkey(self) -> None:
        """``kill -9`` the redis-server by PID: no shutdown save, only what its AOF holds."""
        if self.valkey.process.poll() is None:
            self.valkey.process.send_signal(signal.SIGKILL)
            self.valkey.process.wait(timeout=STOP_SECONDS)

    def restart_valkey(self) -> None:
        """Start redis-server again on the same port and AOF directory; block until it answers."""
        assert self.valkey.process.poll() is not None, "Valkey is still running"
        self.valkey = start_valkey(self.valkey_directory, port=self.valkey.port)

    def kill_relay(self, index: int) -> None:
        self.relays[index].kill()

    def restart_relays(self, *indexes: int) -> None:
        """Start the given relays (all by default) again on their ports; block until serving.

        Those still running are first stopped as SIGTERM stops them.
        """
        chosen = [self.relays[i] for i in indexes] if indexes else self.relays
        for relay in chosen:
            relay.terminate()
        _start(chosen)

    def ensure_running(self) -> None:
        """Restart whatever has died (Valkey first), so one test's crash is not the next one's."""
        if self.valkey.process.poll() is not None:
            self.restart_valkey()
        _start([relay for relay in self.relays if not relay.running])

    def assert_running(self) -> None:
        """Fail, with its log, if a relay has exited: no fault may take a relay down."""
        for relay in self.relays:
            assert relay.running, f"relay {relay.index} exited:\n{relay.log_tail()}"
        assert self.valkey.process.poll() is None, "redis-server exited"

    def stop(self) -> None:
        """Stop every relay, then Valkey, each by its PID; what is dead already is reaped."""
        try:
            for relay in self.relays:
                relay.terminate()
        finally:
            self.valkey.stop()

    def round_robin(self) -> "RoundRobin":
        return RoundRobin(self)


def _start(relays: Sequence[Relay]) -> None:
    """Spawn all first, then wait for each: the relays start in parallel."""
    for relay in relays:
        relay.spawn()
    deadline = time.monotonic() + RELAY_START_SECONDS
    try:
        for relay in relays:
            relay.wait_serving(deadline)
    except BaseException:
        for relay in relays:
            relay.kill()
        raise


def start_deployment(directory: Path, relays: int, *options: str) -> Deployment:
    """A redis-server and ``relays`` relays started with ``options``; the caller must ``stop``."""
    valkey = start_valkey(directory / "valkey")
    started = []
    for index in range(relays):
        home = directory / f"relay-{index}"
        command = server_command(
            "serve", "--valkey", valkey.url, "--data-dir", str(home / "data"),
            *TEST_RELAY_OPTIONS, *options,
        )  # fmt: skip
        started.append(Relay(index, home, command))
    deployment = Deployment(directory, valkey, started)
    try:
        _start(started)
    except BaseException:
        deployment.stop()
        raise
    return deployment


@contextmanager
def running_deployment(directory: Path, relays: int, *options: str) -> Iterator[Deployment]:
    deployment = start_deployment(directory, relays, *options)
    try:
        yield deployment
    finally:
        deployment.stop()


@dataclass
class RoundRobin(Urls):
    """A deployment's relays seen as one server: each ``ws_url`` is the next relay's.

    So successive ``connect`` calls alternate between the relays, and the members of
    one room sit on different processes. HTTP (``base``, ``port``) goes to the first
    relay. It has the surface of an in-process ``ServerHandle`` that tests use:
    ``restart`` restarts every relay on its port (Valkey keeps the rooms), ``stop``
    leaves the shared deployment to the fixture that started it.
    """

    deployment: Deployment
    base: str = ""
    _turns: Iterator[int] = field(default_factory=count, repr=False)

    def __post_init__(self) -> None:
        self.base = self.deployment.relays[0].base

    def ws_url(self, room_id: str, client_id: str) -> str:
        relays = self.deployment.relays
        return relays[next(self._turns) % len(relays)].ws_url(room_id, client_id)

    async def restart(self) -> "RoundRobin":
        await trio.to_thread.run_sync(self.deployment.restart_relays)
        return self

    async def stop(self) -> None:
        """Nothing: the deployment outlives the test, and its fixture stops it."""


def readiness(relay: Urls, path: str = "/readyz") -> int:
    """The HTTP status of ``GET path`` (blocks for at most a few seconds; call it in a thread)."""
    conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=WAIT)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


async def wait_readiness(relay: Urls, status: int, seconds: float) -> None:
    """Poll ``/readyz`` until it answers ``status``, for at most ``seconds``."""
    with trio.fail_after(seconds):
        while True:  # another process's state: nothing here to wait on but a new request
            if await trio.to_thread.run_sync(readiness, relay) == status:
                return
            await trio.sleep(POLL_SECONDS)


async def refused_with(relay: Urls, room_id: str, token: str, nursery: trio.Nursery) -> int | None:
    """Say hello with ``token`` on a new connection to ``relay``; return the close code."""
    peer = await connect(nursery, relay, room_id)
    await peer.send({"type": "hello", "auth": token})
    return await peer.closed_with()


async def rejoin(
    nursery: trio.Nursery,
    relays: Sequence[Urls],
    room_id: str,
    token: str,
    client_id: str | None = None,
    first: int = 0,
) -> tuple[Peer, dict[str, Any], int]:
    """Connect and say hello to the first relay of the list that takes it, from ``first`` on.

    What a client does when its relay dies: try the next address it knows. Returns
    the peer, its history envelope and the index of the relay it reached. A relay
    that refuses the connection, answers nothing or closes it with a code that says
    "elsewhere or later" (``RETRY_CLOSES``) is skipped, round and round the list,
    with a backoff, for at most ``REJOIN_SECONDS``; any other close fails the test.
    """
    client_id = client_id or new_client_id()
    pause = POLL_SECONDS
    with trio.fail_after(REJOIN_SECONDS):
        for turn in count(first):
            index = turn % len(relays)
            try:
                peer = await connect(nursery, relays[index], room_id, client_id)
                history, _ = await peer.hello(token)
            except ConnectionClosed as closed:
                code = closed.reason.code if closed.reason is not None else None
                assert code in RETRY_CLOSES, f"relay {index} closed the hello with {code}"
            except (OSError, HandshakeError, trio.TooSlowError):
                pass
            else:
                return peer, history, index
            await trio.sleep(pause)
            pause = min(2 * pause, MAX_BACKOFF_SECONDS)
    raise AssertionError("unreachable")  # count() never ends


@dataclass
class Listener:
    """A peer whose frames a background task reads into ``frames`` until it is closed.

    ``closed`` is the close code once the connection has ended. ``wait_for`` waits,
    with a bound, for a condition on what has arrived.
    """

    peer: Peer
    frames: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)  # the frames that are messages
    closed: int | None = None
    ended: bool = False
    _changed: trio.Event = field(default_factory=trio.Event, repr=False)

    def start(self, nursery: trio.Nursery) -> "Listener":
        nursery.start_soon(self._read)
        return self

    def events(self, event: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == "system" and f["event"] == event]

    async def wait_for(
        self, condition: Callable[["Listener"], bool], seconds: float = WAIT
    ) -> None:
        """Wait until ``condition(self)`` holds; fail after ``seconds``, showing the frames."""
        try:
            with trio.fail_after(seconds):
                while not condition(self):
                    if self.ended:
                        raise AssertionError(f"closed with {self.closed} before the condition")
                    await self._changed.wait()
        except trio.TooSlowError:
            last = self.frames[-5:]
            raise AssertionError(f"not within {seconds} s; last frames: {last}") from None

    async def _read(self) -> None:
        try:
            while True:
                data = await self.peer.ws.get_message()
                frame = json.loads(data)
                assert isinstance(frame, dict), frame
                self.frames.append(frame)
                if frame["type"] == "message":
                    self.messages.append(frame)
                self._wake()
        except ConnectionClosed:
            assert self.peer.ws.closed is not None
            self.closed = self.peer.ws.closed.code
            self.ended = True
            self._wake()

    def _wake(self) -> None:
        """Wake every waiter; the next ones wait on a new event."""
        self._changed.set()
        self._changed = trio.Event()
