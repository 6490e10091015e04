"""A real redis-server (the protocol Valkey speaks) on 127.0.0.1, one per test.

Started with persistence as a deployment would run it (AOF on, no RDB snapshots)
in the test's own directory, and stopped by its PID when the test ends. A test may
start it from a config file (deploy/valkey/valkey.conf) with more options, and
with an ACL file that disables the default user: it then names the user its
readiness PING authenticates as.
"""

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
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

    def url_as(self, user: str, password: str) -> str:
        """The URL with an ACL user's credentials (both must be URL-safe as they are)."""
        return f"redis://{user}:{password}@127.0.0.1:{self.port}/0"

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


def _answers(port: int, auth: tuple[str, str] | None = None) -> bool:
    login = b"" if auth is None else f"AUTH {auth[0]} {auth[1]}\r\n".encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(login + b"PING\r\n")
            reply = b""
            while reply.count(b"\r\n") < (1 if auth is None else 2) and len(reply) < 256:
                if not (chunk := conn.recv(256)):
                    break
                reply += chunk
            return reply.endswith(b"+PONG\r\n")
    except OSError:
        return False


def start_valkey(
    directory: Path,
    config: Path | None = None,
    extra: Sequence[str] = (),
    auth: tuple[str, str] | None = None,
    port: int | None = None,
) -> Valkey:
    """A redis-server on ``port`` (or a free one), answering PING; the caller must ``stop()`` it.

    Given the port and directory of one stopped, it restarts that server on its AOF.
    ``config`` is a config file read first, ``extra`` more options after the test's
    own (``--aclfile FILE``), and ``auth`` the user and password that PING as.
    """
    server = shutil.which("valkey-server") or shutil.which("redis-server")
    assert server, "redis-server is missing: scripts/test installs it with apt"
    directory.mkdir(parents=True, exist_ok=True)
    port = port or _free_port()
    process = subprocess.Popen(
        [server, *([] if config is None else [str(config)]),
         "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
         "--save", "", "--appendonly", "yes", "--daemonize", "no", "--logfile", "valkey.log",
         *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    valkey = Valkey(port, directory, process)
    deadline = time.monotonic() + START_SECONDS
    while not _answers(port, auth):
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
