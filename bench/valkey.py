"""The Valkey a `--valkey` target stores its rooms in: the benchmark's own redis-server.

Each Valkey target gets a fresh server on 127.0.0.1 (a free port, a temporary
directory) with persistence as a deployment runs it: the append-only file on,
fsync once a second (``appendfsync everysec``), no RDB snapshots. It is stopped
by its PID when the target stops. ``valkey-server`` is used where it is
installed, else ``redis-server`` (Redis 7 speaks the same protocol; Debian
bookworm packages only Redis).
"""

import asyncio
import contextlib
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

START_TIMEOUT_S: Final = 10.0  # redis-server answers PING within milliseconds when idle
STOP_TIMEOUT_S: Final = 10.0  # SIGTERM makes it flush the AOF first: quick at these sizes
PING_INTERVAL_S: Final = 0.02  # between PINGs while it starts
PING_TIMEOUT_S: Final = 0.5  # for one PING's answer
PROGRAMS: Final = ("valkey-server", "redis-server")


def find_server() -> str | None:
    """The valkey-server or redis-server on PATH, if either is installed."""
    for program in PROGRAMS:
        if (path := shutil.which(program)) is not None:
            return path
    return None


def server_version(program: str) -> str:
    """``redis-server 7.0.15`` or the like, from the program's ``--version``."""
    try:
        out = subprocess.run(  # noqa: S603 - the server found on PATH, a fixed argument
            [program, "--version"], capture_output=True, text=True, check=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return Path(program).name
    # "Redis server v=7.0.15 sha=... malloc=jemalloc-5.3.0 bits=64 build=..."
    version = next((word[2:] for word in out.split() if word.startswith("v=")), "?")
    return f"{Path(program).name} {version}"


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now (the kernel's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class Valkey:
    """A running server: its URL for ``serve --valkey`` and its process."""

    program: str
    port: int
    process: asyncio.subprocess.Process

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        return self.process.pid


async def _answers(port: int) -> bool:
    try:
        async with asyncio.timeout(PING_TIMEOUT_S):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(b"PING\r\n")
                return (await reader.readline()).startswith(b"+PONG")
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return False


@contextlib.asynccontextmanager
async def running_valkey(directory: Path) -> AsyncIterator[Valkey]:
    """Start a server with its AOF in ``directory``; stop it by PID after.

    Resource handling: the server gets SIGTERM in ``finally`` whatever happens,
    then SIGKILL if it has not exited within ``STOP_TIMEOUT_S``.

    Error handling: a missing program or a server that does not answer PING
    within ``START_TIMEOUT_S`` raises RuntimeError, with its log's tail.
    """
    program = find_server()
    if program is None:
        raise RuntimeError("no valkey-server or redis-server on PATH: apt-get install redis-server")
    # Setup before any load is measured: a blocking mkdir in a fresh temporary dir is fine.
    directory.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        program, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
        "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
        "--daemonize", "no", "--logfile", "valkey.log",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                # Another process's readiness: nothing to wait on but its answer.
                while process.returncode is None and not await _answers(port):  # noqa: ASYNC110
                    await asyncio.sleep(PING_INTERVAL_S)
        except TimeoutError:
            pass  # reported below with the log
        if process.returncode is not None or not await _answers(port):
            log = directory / "valkey.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{Path(program).name} did not start on port {port}:\n{tail}")
        yield Valkey(program, port, process)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
