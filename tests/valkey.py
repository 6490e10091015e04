"""A real redis-server (the protocol Valkey speaks) on 127.0.0.1, one per test.

Started with persistence as a deployment would run it (AOF on, no RDB snapshots)
in the test's own directory, and stopped by its PID when the test ends.
"""

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

START_SECONDS = 10.0


@dataclass
class Valkey:
    port: int
    directory: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        """SIGTERM this server by its PID, then SIGKILL if it does not exit."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_valkey(directory: Path, port: int | None = None) -> Valkey:
    """A redis-server on ``port`` (or a free one), answering PING; the caller must ``stop()`` it.

    Given the port and directory of an earlier one, it is that server restarted: it
    reloads the AOF it finds there.
    """
    server = shutil.which("valkey-server") or shutil.which("redis-server")
    assert server, "redis-server is missing: scripts/test installs it with apt"
    directory.mkdir(parents=True, exist_ok=True)
    port = port or _free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
         "--save", "", "--appendonly", "yes", "--daemonize", "no", "--logfile", "valkey.log"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    valkey = Valkey(port, directory, process)
    deadline = time.monotonic() + START_SECONDS
    while not _answers(port):
        if process.poll() is not None or time.monotonic() > deadline:
            valkey.stop()
            log = directory / "valkey.log"
            raise AssertionError(f"redis-server did not start: {log.read_text()[-2000:]}")
        time.sleep(0.02)
    return valkey


@contextmanager
def running_valkey(directory: Path) -> Iterator[Valkey]:
    valkey = start_valkey(directory)
    try:
        yield valkey
    finally:
        valkey.stop()
