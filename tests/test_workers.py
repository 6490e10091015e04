"""``securechat serve --workers N --valkey URL``: real processes on a real redis-server.

Which worker accepted a connection is read from /proc, as ``ss -p`` reads it: the
server's end of each TCP connection is a socket inode in /proc/net/tcp, and the
worker that accepted it holds that inode among its descriptors. Nothing is added
to the server to tell.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import pytest
import trio

from securechat.cli import build_parser, config_from_args, main
from securechat.limits import READY_TIMEOUT_SECONDS
from securechat.workers import WORKER_STOP_SECONDS
from tests.harness import Peer, joined_peer, new_room_id, new_token
from tests.process import ServerProcess, start_process, terminate
from tests.valkey import Valkey, start_valkey

WORKERS: Final = 2
# Connections opened at most until every worker holds some: the first worker to wake
# takes each, so a few are needed, but 2 workers missing one of 40 is no chance.
MAX_CONNECTIONS_TO_SPREAD: Final = 40
POLL_SECONDS: Final = 0.02
UNPRICED: Final = "1000000"  # a new-rooms burst that no test reaches: no proof of work
SETTLE_SECONDS: Final = 15.0  # a condition polled for: a worker restarted, a socket accepted


def children(parent: int) -> set[int]:
    """The live processes whose parent is ``parent``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        fields = stat.rpartition(")")[2].split()
        if fields[0] != "Z" and int(fields[1]) == parent:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def server_end(server_port: int, client_port: int) -> int | None:
    """The inode of the server's end of the connection from ``client_port``, if open."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], int(fields[9])
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == (
            client_port
        ):
            return inode
    return None


async def owner(workers: Iterable[int], server_port: int, client_port: int) -> int:
    """The worker that accepted the connection from ``client_port`` (polled: it may be
    queued still)."""
    with trio.fail_after(SETTLE_SECONDS):
        while True:
            inode = server_end(server_port, client_port)
            for pid in workers:
                if inode is not None and inode in socket_inodes(pid):
                    return pid
            await trio.sleep(POLL_SECONDS)


async def until(condition: Callable[[], bool]) -> None:
    """Return once ``condition()`` holds, polled for at most ``SETTLE_SECONDS``."""
    with trio.fail_after(SETTLE_SECONDS):
        while True:
            if condition():
                return
            await trio.sleep(POLL_SECONDS)


async def wait_workers(parent: int, count: int, gone: int | None = None) -> set[int]:
    """The supervisor's ``count`` workers, once it has them (and ``gone`` is not one)."""
    found: set[int] = set()

    def complete() -> bool:
        found.clear()
        found.update(children(parent))
        return len(found) == count and gone not in found

    await until(complete)
    return found


async def spread_peers(
    nursery: trio.Nursery, server: ServerProcess, workers: set[int]
) -> dict[int, list[Peer]]:
    """Authenticated peers, each in a room of its own, until every worker holds some."""
    held: dict[int, list[Peer]] = {pid: [] for pid in workers}
    for _ in range(MAX_CONNECTIONS_TO_SPREAD):
        peer = await joined_peer(nursery, server, new_room_id(), new_token())
        held[await owner(workers, server.port, peer.ws.local.port)].append(peer)  # type: ignore[union-attr]
        if all(held.values()):
            return held
    raise AssertionError(
        f"a worker accepted nothing: {Counter({p: len(v) for p, v in held.items()})}"
    )


async def test_two_workers_share_one_port_and_drain_on_sigterm(
    nursery: trio.Nursery, tmp_path: Path, valkey: Valkey
) -> None:
    metrics = free_port_pair()
    server = await start_workers(tmp_path, valkey, "--metrics-address", f"127.0.0.1:{metrics}")
    try:
        workers = await wait_workers(server.process.pid, WORKERS)
        assert await http_status(server.port, "/healthz") == 200
        held = await spread_peers(nursery, server, workers)
        # Each worker's metrics, on the port plus its index, count its own sockets.
        counts = [await open_websockets(metrics + index) for index in range(WORKERS)]
        assert sorted(counts) == sorted(len(peers) for peers in held.values())
        server.process.send_signal(signal.SIGTERM)
        for peers in held.values():
            for peer in peers:
                assert await peer.closed_with() == 1001
        with trio.fail_after(WORKER_STOP_SECONDS + 5):
            assert await server.process.wait() == 0
        assert not any(alive(pid) for pid in workers)
        output = await server.rest_of_output()
        assert "stopped" in output
        assert "Traceback" not in output
    finally:
        await close(server)


async def test_a_killed_worker_is_replaced_and_serving_goes_on(
    nursery: trio.Nursery, tmp_path: Path, valkey: Valkey
) -> None:
    server = await start_workers(tmp_path, valkey, "--log-format", "json")
    try:
        workers = await wait_workers(server.process.pid, WORKERS)
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        replaced = await wait_workers(server.process.pid, WORKERS, gone=victim)
        (newcomer,) = replaced - workers
        seen = await read_until(server, rf"worker \d serving again \(pid {newcomer}\)")
        held = await spread_peers(nursery, server, (workers - {victim}) | {newcomer})
        assert held[newcomer]  # the new one serves as well
        for peer in (p for peers in held.values() for p in peers):
            await peer.post()
            await peer.expect("message")
        # SIGSTOP one: it cannot drain, so the supervisor kills it at its bound.
        stuck = newcomer
        os.kill(stuck, signal.SIGSTOP)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        with trio.fail_after(WORKER_STOP_SECONDS + 5):
            assert await server.process.wait() == 0
        assert time.monotonic() - started >= WORKER_STOP_SECONDS - 0.5
        assert not alive(stuck)
        assert not any(alive(pid) for pid in replaced)
        output = seen + await server.rest_of_output()
        assert re.search(rf"worker \d \(pid {victim}\) was killed by SIGKILL; starting", output)
        assert "did not stop within" in output
        # Every line of every process in the supervisor's format: JSON. (The first may
        # be the end of the line start_process read up to "serving on".)
        lines = [json.loads(line) for line in output.splitlines()[1:]]
        assert {line["level"] for line in lines} <= {"info", "warning", "error"}
        assert any(line["logger"] == "securechat.server" for line in lines)  # a worker's
    finally:
        await close(server)


async def test_readyz_follows_valkey_on_every_worker_and_workers_outlive_no_supervisor(
    tmp_path: Path, valkey: Valkey
) -> None:
    server = await start_workers(tmp_path, valkey)
    try:
        workers = await wait_workers(server.process.pid, WORKERS)
        all_ready = dict.fromkeys(workers, 200)
        assert await readiness_by_worker(server.port, workers) == all_ready
        valkey.stop()
        assert await readiness_by_worker(server.port, workers) == dict.fromkeys(workers, 503)
        assert await http_status(server.port, "/healthz") == 200  # alive all the same
        restarted = start_valkey(valkey.directory, port=valkey.port)
        try:
            with trio.fail_after(SETTLE_SECONDS):
                while True:
                    if await readiness_by_worker(server.port, workers) == all_ready:
                        break
                    await trio.sleep(POLL_SECONDS)
        finally:
            restarted.stop()
        server.kill()  # SIGKILL: nothing tells the workers but the end of their stdin
        await until(lambda: not any(alive(pid) for pid in workers))
    finally:
        await close(server)


async def test_readyz_of_one_process_follows_valkey_down_and_up(
    tmp_path: Path, valkey: Valkey
) -> None:
    server = await start_process(tmp_path / "data", 0, "--valkey", valkey.url)
    try:
        assert await http_status(server.port, "/readyz") == 200
        valkey.stop()
        started = time.monotonic()
        assert await http_status(server.port, "/readyz") == 503
        assert time.monotonic() - started < READY_TIMEOUT_SECONDS + 1
        restarted = start_valkey(valkey.directory, port=valkey.port)
        try:
            with trio.fail_after(SETTLE_SECONDS):
                while True:
                    if await http_status(server.port, "/readyz") == 200:
                        break
                    await trio.sleep(POLL_SECONDS)
        finally:
            restarted.stop()
        assert await terminate(server) == 0  # and no traceback on the way out
        assert "Traceback" not in await server.rest_of_output()
    finally:
        await close(server)


def test_a_worker_that_cannot_start_stops_the_server_in_one_line(
    tmp_path: Path, valkey: Valkey
) -> None:
    url = valkey.url
    valkey.stop()  # nothing listens there now
    done = run_serve(tmp_path, "--port", "0", "--workers", "2", "--valkey", url)
    assert done.returncode == 1, done.stderr
    assert "cannot use Valkey at redis://127.0.0.1:" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--workers", "2"], "--workers 2 needs --valkey"),
        (["--workers", "0", "--valkey", "redis://127.0.0.1/0"], "must be between 1 and"),
    ],
)
def test_workers_options_are_refused_in_one_line(
    tmp_path: Path, args: list[str], says: str
) -> None:
    done = run_serve(tmp_path, *args)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        ([], {"SECURECHAT_WORKERS": "3"}, "--workers 3 needs --valkey"),
        (["--workers", "2", "--ephemeral"], {}, "--workers 2 needs --valkey"),
        (
            ["--workers", "4", "--valkey", "redis://h/0", "--metrics-address", "127.0.0.1:65534"],
            {},
            "65537 is past 65535",
        ),
    ],
)
def test_workers_settings_are_checked_with_the_others(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    env: dict[str, str],
    says: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        main(["serve", *args])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert says in error
    assert len(error.strip().splitlines()) == 1, error


def test_workers_default_to_one_and_read_their_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = build_parser()
    args = parser.parse_args(["serve"])
    assert config_from_args(args.command_parser, args).workers == 1
    monkeypatch.setenv("SECURECHAT_WORKERS", "3")
    monkeypatch.setenv("SECURECHAT_VALKEY", "redis://127.0.0.1/0")
    args = parser.parse_args(["serve"])
    assert config_from_args(args.command_parser, args).workers == 3


def test_an_address_in_use_is_one_line_before_any_worker(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["--port", str(port), "--workers", "2", "--valkey", "redis://127.0.0.1:1/0"]
        done = run_serve(tmp_path, *args)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == (
        f"securechat: error: cannot listen on 127.0.0.1:{port}: address already in use"
    )


# ----- helpers ------------------------------------------------------------------------------


async def start_workers(tmp_path: Path, valkey: Valkey, *extra: str) -> ServerProcess:
    """``serve --workers 2`` on port 0, with new rooms unpriced (each peer makes one)."""
    return await start_process(
        tmp_path / "data", 0, "--workers", str(WORKERS), "--valkey", valkey.url,
        "--new-rooms-burst", UNPRICED, "--source-new-rooms-burst", UNPRICED, *extra,
    )  # fmt: skip


def run_serve(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "securechat", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        check=False,
    )


async def read_until(server: ServerProcess, pattern: str) -> str:
    """The server's output up to a line that matches ``pattern`` (waited for)."""
    seen = ""
    with trio.fail_after(SETTLE_SECONDS):
        while not re.search(pattern, seen):
            chunk = await server.output.receive_some()
            assert chunk, seen
            seen += chunk.decode()
    while not seen.endswith("\n"):  # the rest of that line, for the caller's parsing
        seen += (await server.output.receive_some()).decode()
    return seen


async def close(server: ServerProcess) -> None:
    """Kill the supervisor and every worker it left, by their PIDs."""
    left = children(server.process.pid)
    await server.close()
    for pid in left:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def free_port_pair() -> int:
    """A port P with P + 1 free too (for two metrics listeners)."""
    for _ in range(50):
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            port: int = first.getsockname()[1]
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise AssertionError("no two free ports in a row")


@contextmanager
def raw_connection(port: int) -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        yield conn


def _exchange(conn: socket.socket, path: str) -> tuple[int, bytes]:
    """One HTTP/1.1 request on an open connection: status and body."""
    conn.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(
        int(v) for k, _, v in (h.partition(":") for h in lines[1:]) if k.lower() == "content-length"
    )
    while len(body) < length:
        body += conn.recv(4096)
    return int(lines[0].split()[1]), body


async def http_status(port: int, path: str) -> int:
    def ask() -> int:
        with raw_connection(port) as conn:
            return _exchange(conn, path)[0]

    with trio.fail_after(READY_TIMEOUT_SECONDS + 5):
        return await trio.to_thread.run_sync(ask)


async def open_websockets(metrics_port: int) -> int:
    """A worker's ``securechat_websockets_open`` from its metrics listener."""

    def ask() -> bytes:
        with raw_connection(metrics_port) as conn:
            status, body = _exchange(conn, "/metrics")
            assert status == 200
            return body

    body = await trio.to_thread.run_sync(ask)
    for line in body.decode().splitlines():
        if line.startswith("securechat_websockets_open "):
            return int(float(line.split()[1]))
    raise AssertionError(body[:2000])


async def readiness_by_worker(port: int, workers: set[int]) -> dict[int, int]:
    """``GET /readyz`` asked of every worker at once, each on a connection it accepted.

    Each answer must come within the bound ``/readyz`` promises, ready or not.
    """
    held: dict[int, socket.socket] = {}
    try:
        for _ in range(MAX_CONNECTIONS_TO_SPREAD):
            conn = await trio.to_thread.run_sync(socket.create_connection, ("127.0.0.1", port), 5)
            try:
                pid = await owner(workers, port, conn.getsockname()[1])
            except BaseException:
                conn.close()
                raise
            if pid in held:
                conn.close()
            else:
                held[pid] = conn
            if len(held) == len(workers):
                break
        else:
            raise AssertionError(f"a worker accepted nothing: {sorted(held)}")
        answers: dict[int, int] = {}

        async def ask(pid: int) -> None:
            reply = await trio.to_thread.run_sync(_exchange, held[pid], "/readyz")
            answers[pid] = reply[0]

        with trio.fail_after(READY_TIMEOUT_SECONDS + 1):
            async with trio.open_nursery() as nursery:
                for pid in held:
                    nursery.start_soon(ask, pid)
        return answers
    finally:
        for conn in held.values():
            conn.close()
