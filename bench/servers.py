"""The relays under test: each runs as a child process on 127.0.0.1 with an ephemeral port.

The figures that do not depend on the generator's speed come from the kernel:
the server's CPU time (utime + stime of all its threads, /proc/PID/stat) and its
resident memory (VmRSS, /proc/PID/status).
"""

import asyncio
import contextlib
import os
import re
import resource
import shutil
import sys
import tempfile
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
SERVING: Final = re.compile(rb"serving on (http://[0-9.]+:[0-9]+)")
START_TIMEOUT_S: Final = 30.0  # a cold Python import on a busy machine
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

    def command(self, data_dir: Path) -> list[str]:
        args = [sys.executable, "-m", self.module, "--host", "127.0.0.1", "--port", "0"]
        if self.module == "securechat":
            args[3:3] = ["serve"]
            args += ["--data-dir", str(data_dir), *SECURECHAT_LIMITS, *self.securechat_args]
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
TARGETS: Final = (DURABLE, EPHEMERAL, STACK, PEER)
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


@dataclass
class Server:
    target: Target
    base_url: str
    process: asyncio.subprocess.Process
    output: deque[str] = field(default_factory=lambda: deque(maxlen=OUTPUT_LINES_KEPT))

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User plus system CPU time of every thread of the server so far."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        # The command name may hold spaces; the fields after it are fixed.
        fields = stat[stat.rindex(")") + 2 :].split()
        utime, stime = int(fields[11]), int(fields[12])
        return (utime + stime) / CLOCK_TICKS_PER_S

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for {self.target.name} (pid {self.pid})")

    def check_alive(self) -> None:
        if self.process.returncode is not None:
            tail = "\n".join(self.output)
            raise RuntimeError(
                f"{self.target.name} exited with {self.process.returncode}; its output:\n{tail}"
            )


async def _keep_output(server: Server) -> None:
    stdout = server.process.stdout
    while stdout is not None and (line := await stdout.readline()):
        server.output.append(line.decode(errors="replace").rstrip())


@contextlib.asynccontextmanager
async def running(target: Target) -> AsyncIterator[Server]:
    """Start the target in a fresh data directory; kill it and remove the directory after.

    Resource handling: the child is killed and reaped in ``finally`` whatever
    happens, so no run leaves a server behind.
    """
    with tempfile.TemporaryDirectory(prefix=f"bench-{target.name}-") as data_dir:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = await asyncio.create_subprocess_exec(
            *target.command(Path(data_dir)),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
            cwd=REPO_ROOT,
            env=env,
        )
        keeper: asyncio.Task[None] | None = None
        try:
            server = await _wait_serving(target, process)
            keeper = asyncio.create_task(_keep_output(server))
            yield server
        finally:
            if process.returncode is None:
                process.kill()
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await process.wait()
            if keeper is not None:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper


async def _wait_serving(target: Target, process: asyncio.subprocess.Process) -> Server:
    if process.stdout is None:
        raise RuntimeError("started without a pipe")
    seen = b""
    async with asyncio.timeout(START_TIMEOUT_S):
        while (match := SERVING.search(seen)) is None:
            line = await process.stdout.readline()
            if not line:
                raise RuntimeError(f"{target.name} exited before serving:\n{seen.decode()}")
            seen += line
    return Server(target, match.group(1).decode(), process)


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
