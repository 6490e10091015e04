"""The relays under test: each runs as child processes on 127.0.0.1 with ephemeral ports.

The figures that do not depend on the generator's speed come from the kernel:
the server's CPU time (utime + stime of all its threads, /proc/PID/stat) and its
resident memory (VmRSS, /proc/PID/status). A target with `--valkey` gets its own
redis-server (bench/valkey.py), whose CPU time counts as the server's with the
relay processes' (the relay's work per message is split between the two), and
whose memory is reported apart from theirs.
"""

import asyncio
import contextlib
import os
import re
import resource
import shutil
import signal
import sys
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeVar

from bench.valkey import Valkey, find_server, free_port, running_valkey, server_version

T = TypeVar("T")  # what a context manager entered by enter_together gives

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
SERVING: Final = re.compile(rb"serving on (http://[0-9.]+:[0-9]+)")
START_TIMEOUT_S: Final = 30.0  # a cold Python import on a busy machine
WORKERS_POLL_S: Final = 0.05  # while waiting for `--workers` to have started its processes
STOP_TIMEOUT_S: Final = 10.0
CLOCK_TICKS_PER_S: Final = os.sysconf("SC_CLK_TCK")
OUTPUT_LINES_KEPT: Final = 40  # of a server's output, shown if it dies

# Limits raised so that what is measured is the relay, not its rate limiter or caps.
SECURECHAT_LIMITS: Final = (
    "--rate", "100000", "--burst", "100000", "--max-participants", "10000",
    "--max-rooms", "1000000", "--hello-timeout", "30", "--ping-interval", "0",
    "--new-rooms-burst", "1000000", "--source-new-rooms-burst", "1000000",
    "--max-connections-per-source", "0",  # every load client comes from 127.0.0.1
    "--log-level", "warning",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Target:
    """A relay the benchmark runs: a short name for tables and how to start it."""

    name: str
    description: str
    module: str
    securechat_args: tuple[str, ...] = ()
    valkey: bool = False  # rooms in the target's own redis-server (`serve --valkey URL`)
    processes: int = 1  # relay processes: `--workers N`, or N servers on N ports (see running)

    def command(
        self, data_dir: Path, *, port: int = 0, valkey_url: str = "", workers: int = 0
    ) -> list[str]:
        args = [sys.executable, "-m", self.module, "--host", "127.0.0.1", "--port", str(port)]
        if self.module == "securechat":
            args[3:3] = ["serve"]
            args += ["--data-dir", str(data_dir), *SECURECHAT_LIMITS, *self.securechat_args]
            if valkey_url:  # no password: the benchmark's own server on 127.0.0.1
                args += ["--valkey", valkey_url]
            if workers:
                args += ["--workers", str(workers)]
        return args


DURABLE: Final = Target("securechat", "securechat, SQLite history (default)", "securechat")
EPHEMERAL: Final = Target(
    "ephemeral", "securechat --ephemeral, history in memory", "securechat", ("--ephemeral",)
)
PEER: Final = Target("peer", "bench/peers/websockets_relay.py", "bench.peers.websockets_relay")
STACK: Final = Target(
    "quart-trio",
    "bench/peers/quart_trio_relay.py, the peer's relay on securechat's stack",
    "bench.peers.quart_trio_relay",
)
VALKEY: Final = Target(
    "valkey",
    "securechat serve --valkey, one process, rooms in its own redis-server (AOF, everysec)",
    "securechat",
    valkey=True,
)
VALKEY_2: Final = Target(
    "valkey-2",
    "securechat serve --workers 2 --valkey (without --workers: two serve --valkey processes "
    "on two ports, each room on one of them), one redis-server",
    "securechat",
    valkey=True,
    processes=2,
)
TARGETS: Final = (DURABLE, EPHEMERAL, STACK, PEER, VALKEY, VALKEY_2)
VALKEY_TARGETS: Final = (VALKEY, VALKEY_2)
# Measured in the idle scenario only, beside DURABLE: Hypercorn keeps a ping task
# per WebSocket while pings are on (later options win, so this overrides the 0).
PINGING: Final = Target(
    "pinging",
    "securechat with WebSocket pings every 25 s (its default), in the idle scenario only",
    "securechat",
    ("--ping-interval", "25"),
)


def raise_open_files_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to the hard limit; servers inherit it.

    Returns the new soft limit, which bounds how many connections a run can hold.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        wanted = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def enter_together(
    stack: contextlib.AsyncExitStack, managers: Sequence[contextlib.AbstractAsyncContextManager[T]]
) -> list[T]:
    """Enter every manager at once (servers start in parallel); each exits with ``stack``.

    Error handling: if one fails to start, the task group cancels the others'
    starts (each cleans up after itself) and the ones already started exit with
    the stack as the error leaves it.
    """
    entered: dict[int, T] = {}

    async def enter(index: int, manager: contextlib.AbstractAsyncContextManager[T]) -> None:
        entered[index] = await stack.enter_async_context(manager)

    async with asyncio.TaskGroup() as group:
        for index, manager in enumerate(managers):
            group.create_task(enter(index, manager))
    return [entered[index] for index in range(len(managers))]


def process_tree(pid: int) -> list[int]:
    """``pid`` and every descendant alive now (``/proc/PID/task/TID/children``)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        found.append(parent)
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            with contextlib.suppress(OSError):  # a thread or process that just ended
                todo += [int(child) for child in children.read_text().split()]
    return found


def _start_time(pid: int) -> int | None:
    """When the process started (clock ticks since boot), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def _identities(pid: int) -> list[tuple[int, int]]:
    """(PID, start time) of every descendant of ``pid`` alive now."""
    found = [(child, _start_time(child)) for child in process_tree(pid)[1:]]
    return [(child, started) for child, started in found if started is not None]


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of every thread of one process so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name may hold spaces; the fields after it are fixed.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS_PER_S


def process_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and of its descendants alive now (a --workers parent's workers)."""
    total = process_cpu_seconds(pid)
    for child in process_tree(pid)[1:]:
        with contextlib.suppress(OSError):  # it ended between the listing and the read
            total += process_cpu_seconds(child)
    return total


def tree_rss_bytes(pid: int) -> int:
    total = process_rss_bytes(pid)
    for child in process_tree(pid)[1:]:
        with contextlib.suppress(OSError, RuntimeError):
            total += process_rss_bytes(child)
    return total


@dataclass
class Server:
    """A started target: its relay processes, their URLs and, for --valkey, its Valkey."""

    target: Target
    base_urls: tuple[str, ...]
    processes: tuple[asyncio.subprocess.Process, ...]
    valkey: Valkey | None = None
    mode: str = ""  # how the target ran, where that is more than its description says
    output: deque[str] = field(default_factory=lambda: deque(maxlen=OUTPUT_LINES_KEPT))
    _placement: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return self.base_urls[0]

    @property
    def pid(self) -> int:
        """The first relay process: the one py-spy profiles."""
        return self.processes[0].pid

    def url_for(self, room: str) -> str:
        """The base URL a client of ``room`` connects to.

        With several URLs (one per process), rooms take them in turn as they are
        first seen, so each process gets an even share and a room stays whole on
        one: what a load balancer routing by room id does.
        """
        if len(self.base_urls) == 1:
            return self.base_urls[0]
        if (url := self._placement.get(room)) is None:
            url = self.base_urls[len(self._placement) % len(self.base_urls)]
            self._placement[room] = url
        return url

    def relay_cpu_seconds(self) -> float:
        """User plus system CPU time of every relay process (and its workers) so far."""
        return sum(tree_cpu_seconds(process.pid) for process in self.processes)

    def valkey_cpu_seconds(self) -> float | None:
        """The same for the target's redis-server (and any AOF rewrite it forked)."""
        return None if self.valkey is None else tree_cpu_seconds(self.valkey.pid)

    def cpu_seconds(self) -> float:
        """The server's CPU time so far: the relay processes' plus their Valkey's."""
        return self.relay_cpu_seconds() + (self.valkey_cpu_seconds() or 0.0)

    def rss_bytes(self) -> int:
        """VmRSS of the relay processes (and their workers), summed; not Valkey's."""
        return sum(tree_rss_bytes(process.pid) for process in self.processes)

    def valkey_rss_bytes(self) -> int | None:
        return None if self.valkey is None else process_rss_bytes(self.valkey.pid)

    def check_alive(self) -> None:
        for process in self.processes:
            if process.returncode is not None:
                tail = "\n".join(self.output)
                raise RuntimeError(
                    f"{self.target.name} exited with {process.returncode}; its output:\n{tail}"
                )
        if self.valkey is not None and (code := self.valkey.process.returncode) is not None:
            raise RuntimeError(f"{self.target.name}'s Valkey exited with {code}")


async def _keep_output(process: asyncio.subprocess.Process, output: deque[str]) -> None:
    stdout = process.stdout
    while stdout is not None and (line := await stdout.readline()):
        output.append(line.decode(errors="replace").rstrip())


_workers_flag: dict[str, bool] = {}


async def serve_has_workers() -> bool:
    """Whether this securechat's ``serve --help`` offers ``--workers`` (asked once)."""
    if "answer" not in _workers_flag:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "securechat", "serve", "--help",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            stdin=asyncio.subprocess.DEVNULL, cwd=REPO_ROOT,
        )  # fmt: skip
        async with asyncio.timeout(START_TIMEOUT_S):
            out, _ = await process.communicate()
        _workers_flag["answer"] = re.search(rb"(^|\s)--workers\b", out) is not None
    return _workers_flag["answer"]


@contextlib.asynccontextmanager
async def _relay(
    target: Target, command: Sequence[str], output: deque[str]
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """One relay process, serving; the process and the URL it printed.

    Resource handling: in ``finally`` the process is stopped and reaped whatever
    happens: one with workers gets SIGTERM (it drains and stops them), SIGKILL
    if it has not exited within ``STOP_TIMEOUT_S``, and then any worker still
    alive is killed by PID (checked against its start time, so that a reused
    PID is left alone); a single process is killed.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("SECURECHAT_VALKEY", None)  # the target's own command line says where rooms go
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
        cwd=REPO_ROOT,
        env=env,
    )
    keeper: asyncio.Task[None] | None = None
    try:
        url = await _wait_serving(target, process)
        keeper = asyncio.create_task(_keep_output(process, output))
        yield process, url
    finally:
        workers = [] if process.returncode is not None else _identities(process.pid)
        if workers:
            process.terminate()  # a parent of workers drains and stops them on SIGTERM
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await process.wait()
        if process.returncode is None:
            process.kill()
        async with asyncio.timeout(STOP_TIMEOUT_S):
            await process.wait()
        for pid, started in workers:  # any the parent left behind, if still the same process
            if _start_time(pid) == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if keeper is not None:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper


async def _wait_workers(process: asyncio.subprocess.Process, workers: int) -> None:
    """Until the parent and its workers are ``workers`` processes at least."""
    async with asyncio.timeout(START_TIMEOUT_S):
        while len(process_tree(process.pid)) < workers:
            if process.returncode is not None:
                return  # check_alive reports it
            await asyncio.sleep(WORKERS_POLL_S)


@contextlib.asynccontextmanager
async def running(target: Target) -> AsyncIterator[Server]:
    """Start the target in a fresh data directory; stop it and remove the directory after.

    A ``valkey`` target first gets its own redis-server. A target of several
    processes runs as ``serve --workers N`` where ``serve --help`` offers it
    (one port, the kernel spreading connections over the workers), else as N
    ``serve --valkey`` processes on N ports, each room on one of them.

    Resource handling: every child (the relays, their workers, the Valkey) is
    stopped by PID and reaped in ``finally`` whatever happens, so no run leaves
    a server behind.
    """
    with tempfile.TemporaryDirectory(prefix=f"bench-{target.name}-") as data_dir:
        root = Path(data_dir)
        async with contextlib.AsyncExitStack() as stack:
            valkey = None
            if target.valkey:
                valkey = await stack.enter_async_context(running_valkey(root / "valkey"))
            url = valkey.url if valkey else ""
            output: deque[str] = deque(maxlen=OUTPUT_LINES_KEPT)
            mode = ""
            if target.processes == 1:
                commands = [target.command(root, valkey_url=url)]
                if valkey is not None:
                    mode = f"1 relay process; {server_version(valkey.program)}, AOF everysec"
            elif await serve_has_workers():
                port = free_port()  # one port for every worker, whichever way they share it
                commands = [
                    target.command(root, port=port, valkey_url=url, workers=target.processes)
                ]
                mode = (
                    f"serve --workers {target.processes} on one port (the kernel spreads "
                    "connections over the workers, so rooms span them)"
                )
            else:
                commands = [
                    target.command(root / f"relay-{n}", valkey_url=url)
                    for n in range(target.processes)
                ]
                mode = (
                    f"{target.processes} serve --valkey processes on {target.processes} ports, "
                    "rooms placed on them in turn (this serve has no --workers)"
                )
            if valkey is not None and target.processes > 1:
                mode += f"; {server_version(valkey.program)}, AOF everysec"
            started = await enter_together(
                stack, [_relay(target, command, output) for command in commands]
            )
            if len(commands) == 1 and target.processes > 1:
                await _wait_workers(started[0][0], target.processes)
            yield Server(
                target,
                tuple(url for _, url in started),
                tuple(process for process, _ in started),
                valkey,
                mode,
                output,
            )


async def _wait_serving(target: Target, process: asyncio.subprocess.Process) -> str:
    if process.stdout is None:
        raise RuntimeError("started without a pipe")
    seen = b""
    async with asyncio.timeout(START_TIMEOUT_S):
        while (match := SERVING.search(seen)) is None:
            line = await process.stdout.readline()
            if not line:
                raise RuntimeError(f"{target.name} exited before serving:\n{seen.decode()}")
            seen += line
    return match.group(1).decode()


def valkey_available() -> bool:
    """Whether the Valkey targets can run here (valkey-server or redis-server on PATH)."""
    return find_server() is not None


def find_py_spy() -> str | None:
    """py-spy from this interpreter's environment or PATH, if installed."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


@contextlib.asynccontextmanager
async def profiled(server: Server, svg: Path | None, duration_s: float) -> AsyncIterator[None]:
    """Sample the server with py-spy for ``duration_s`` into a flame graph at ``svg``.

    With ``svg`` None this does nothing. py-spy takes CPU of its own: figures of a
    profiled run are for finding hot spots, not for the report.
    """
    py_spy = find_py_spy()
    if svg is None or py_spy is None:
        yield
        return
    svg.parent.mkdir(parents=True, exist_ok=True)
    process = await asyncio.create_subprocess_exec(
        py_spy, "record", "--pid", str(server.pid), "--duration", str(max(1, round(duration_s))),
        "--rate", "200", "--nonblocking", "--format", "flamegraph", "--output", str(svg),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
        async with asyncio.timeout(duration_s + STOP_TIMEOUT_S):
            await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
