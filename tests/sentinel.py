"""A real primary, its replica and a Sentinel watching them, on 127.0.0.1, for one test.

Each redis-server runs in its own directory on a free port and is stopped by its
PID when the test ends. The sentinel has a short ``down-after-milliseconds``, so a
killed primary is replaced within a few seconds.
"""

import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from tests.valkey import Valkey
from tests.valkey import _free_port as free_port

START_SECONDS: Final = 10.0  # a redis-server answers PING well within this
SETTLE_SECONDS: Final = 15.0  # the replica synced, the sentinel knows it
SERVICE: Final = "chat"
DOWN_AFTER_MS: Final = 500  # how long the primary may not answer before it is down
FAILOVER_TIMEOUT_MS: Final = 3_000


@dataclass
class Server(Valkey):
    """One redis-server (a primary, a replica or a sentinel); ``stop()`` as Valkey's."""

    password: str | None = None
    tls: ssl.SSLContext | None = None

    def command(self, *words: str) -> bytes:
        """One command's raw RESP reply, on a short-lived connection."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as plain:
            conn = self.tls.wrap_socket(plain, server_hostname="127.0.0.1") if self.tls else plain
            with conn, conn.makefile("rb") as replies:
                if self.password is not None:
                    conn.sendall(_request("AUTH", self.password))
                    assert _reply(replies) == b"+OK\r\n"
                conn.sendall(_request(*words))
                return _reply(replies)

    def kill(self) -> None:
        """SIGKILL by PID: no shutdown, no last write."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@dataclass
class Failover:
    primary: Server
    replica: Server
    sentinel: Server
    tls: bool = False

    @property
    def url(self) -> str:
        scheme = "rediss+sentinel" if self.tls else "redis+sentinel"
        return f"{scheme}://127.0.0.1:{self.sentinel.port}/{SERVICE}/0"

    def primary_port(self) -> int:
        """The primary's port as the sentinel names it now."""
        reply = self.sentinel.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        return int(reply.split(b"\r\n")[-2])


def _request(*words: str) -> bytes:
    return b"*%d\r\n" % len(words) + b"".join(
        b"$%d\r\n%s\r\n" % (len(w), w.encode()) for w in words
    )


def _reply(replies: BinaryIO) -> bytes:
    """One whole RESP2 reply, as it came (lines and all)."""
    line = replies.readline()
    kind, size = line[:1], line[1:].strip()
    if kind == b"$" and int(size) >= 0:
        return line + replies.read(int(size) + 2)
    if kind == b"*" and int(size) > 0:
        return line + b"".join(_reply(replies) for _ in range(int(size)))
    return line


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for 127.0.0.1: every server's, and the CA to trust."""

    cert: Path
    key: Path

    def config(self, port: int) -> str:
        """TLS only, replication and Sentinel's links included."""
        return (
            f"port 0\ntls-port {port}\ntls-cert-file {self.cert}\ntls-key-file {self.key}\n"
            f"tls-ca-cert-file {self.cert}\ntls-auth-clients no\ntls-replication yes\n"
        )

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cert)


def make_certificate(directory: Path) -> Certificate:
    directory.mkdir(parents=True, exist_ok=True)
    made = Certificate(directory / "cert.pem", directory / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(made.key), "-out", str(made.cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return made


def _start(
    directory: Path,
    config: str,
    *extra: str,
    password: str | None = None,
    certificate: Certificate | None = None,
) -> Server:
    binary = shutil.which("valkey-server") or shutil.which("redis-server")
    assert binary, "redis-server is missing: scripts/test installs it with apt"
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = directory / "server.conf"  # a sentinel rewrites its own: it must be a file
    listen = certificate.config(port) if certificate else f"port {port}\n"
    conf.write_text(
        f"{listen}bind 127.0.0.1\ndir {directory}\nlogfile server.log\n"
        f'daemonize no\nsave ""\nrepl-diskless-sync-delay 0\nshutdown-timeout 0\n{config}'
    )
    process = subprocess.Popen(
        [binary, str(conf), *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    server = Server(
        port, directory, process, password, certificate.context() if certificate else None
    )
    try:
        _wait_answering(server)
    except BaseException:
        server.stop()  # whatever went wrong, no server outlives the test
        raise
    return server


def _wait_answering(server: Server) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            if server.command("PING").startswith(b"+PONG"):
                return
        except OSError:
            pass
        if server.process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"redis-server did not start: {_log(server.directory)}")
        time.sleep(0.02)


def _log(directory: Path) -> str:
    log = directory / "server.log"
    return log.read_text()[-2000:] if log.exists() else "(no log)"


def _settled(failover: Failover) -> bool:
    info = failover.replica.command("INFO", "replication")
    replicas = failover.sentinel.command("SENTINEL", "REPLICAS", SERVICE)
    return (
        b"master_link_status:up" in info
        and f"{failover.replica.port}".encode() in replicas
        and b"s_down" not in replicas
    )


@contextmanager
def running_failover(
    directory: Path,
    password: str | None = None,
    sentinel_password: str | None = None,
    certificate: Certificate | None = None,
) -> Iterator[Failover]:
    """A primary (AOF on), its replica and one sentinel (quorum 1), all settled.

    ``password`` is the primary's and the replica's (``requirepass``, ``masterauth``,
    the sentinel's ``auth-pass``); ``sentinel_password`` the sentinel's own. With a
    ``certificate``, all three speak TLS only, to clients and to each other.
    """
    auth = f"requirepass {password}\nmasterauth {password}\n" if password else ""
    with ExitStack() as stack:
        primary = _start(
            directory / "primary",
            f"appendonly yes\n{auth}",
            password=password,
            certificate=certificate,
        )
        stack.callback(primary.stop)
        replica = _start(
            directory / "replica",
            f"appendonly yes\n{auth}replicaof 127.0.0.1 {primary.port}\n",
            password=password,
            certificate=certificate,
        )
        stack.callback(replica.stop)
        sentinel = _start(
            directory / "sentinel",
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
            + (f"sentinel auth-pass {SERVICE} {password}\n" if password else "")
            + (f"requirepass {sentinel_password}\n" if sentinel_password else ""),
            "--sentinel",
            password=sentinel_password,
            certificate=certificate,
        )
        stack.callback(sentinel.stop)
        failover = Failover(primary, replica, sentinel, tls=certificate is not None)
        deadline = time.monotonic() + SETTLE_SECONDS
        while not _settled(failover):
            assert time.monotonic() < deadline, f"no replica seen: {_log(sentinel.directory)}"
            time.sleep(0.05)
        yield failover
