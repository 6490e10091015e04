"""deploy/haproxy/haproxy.cfg in front of two relays on Valkey, run for real on 127.0.0.1.

Every piece is the real one: a redis-server (tests/valkey.py) started from
deploy/valkey/valkey.conf with deploy/valkey/users.acl, so the relays run as its
limited ACL user (which proves its command list is enough: Valkey's ACL LOG must
stay empty); two ``securechat serve --valkey`` processes (tests/process.py); and
Debian's HAProxy running the shipped file, given the test's addresses through the
environment variables it reads, and stopped by its PID. A second config file adds
only a stats socket, for the test to read what HAProxy thinks of each relay.

Which relay a connection reached is read from the relays' own metrics
(``securechat_websockets_open``). Clients connect from addresses of their own in
127.0.0.0/8, so that the relays' per-source cap (3 here) shows which address a
relay saw for each.

What waits for the multi-process room (fan-out across relays): nothing here. Two
members of one room are sent to one relay by the hashing, and everything else is
per relay or read from Valkey.
"""

import hashlib
import secrets
import shutil
import subprocess
import urllib.request
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Final

import pytest
import trio
from trio_websocket import ConnectionRejected, WebSocketConnection, wrap_client_stream

from tests.containers import REPO, free_port, unavailable
from tests.harness import WAIT, Peer, new_client_id, new_room_id, new_token
from tests.process import ServerProcess, start_process
from tests.valkey import Valkey, start_valkey

pytestmark = pytest.mark.slow

HAPROXY_CFG: Final = REPO / "deploy" / "haproxy" / "haproxy.cfg"
VALKEY_CONF: Final = REPO / "deploy" / "valkey" / "valkey.conf"
USERS_ACL: Final = REPO / "deploy" / "valkey" / "users.acl"
PASSWORD_PLACEHOLDER: Final = "#SHA256-OF-THE-PASSWORD"  # noqa: S105  # no password: a marker
RELAY_USER: Final = "securechat"
SECOND_USER: Final = "securechat-2"  # the same rules under another name, for one relay
ADMIN_USER: Final = "test-admin"  # the test's own user: ACL LOG, switching a user off
PER_SOURCE: Final = 3  # the relays' --max-connections-per-source
HISTORY: Final = 2  # the relays' --history: a third message makes the script trim
MAX_ROOMS_TO_SPREAD: Final = 40  # new rooms until both relays have one (a fluke: < 1e-6)
HEALTH_TIMEOUT: Final = 15.0  # seconds for HAProxy to see a relay go down or come back
COMMAND_TIMEOUT: Final = 30.0
TRY_AGAIN: Final = 1013  # the close code over the per-source cap


@dataclass
class Front:
    """HAProxy: where clients connect, and its stats socket."""

    port: int
    stats: Path
    process: trio.Process

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Deployment:
    valkey: Valkey
    admin_password: str
    relays: list[ServerProcess]
    metrics: list[int]  # each relay's metrics port
    front: Front

    def admin(self, *command: str) -> str:
        """Run one command in Valkey as the test's admin user; return its output."""
        done = subprocess.run(
            ["redis-cli", "-p", str(self.valkey.port), "--user", ADMIN_USER,
             "--pass", self.admin_password, "--no-auth-warning", *command],
            capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=True,
        )  # fmt: skip
        return done.stdout

    def denied(self) -> list[str]:
        """Valkey's ACL LOG: each command, key or channel a user was refused.

        Failed logins are left out: the test switches a user off itself.
        """
        lines = self.admin("ACL", "LOG").strip().splitlines()  # field, value, field, ...
        entries: list[dict[str, str]] = []
        for field, value in zip(lines[::2], lines[1::2], strict=True):
            if field == "count":
                entries.append({})
            entries[-1][field] = value
        return [
            f"{e['reason']} {e['object']} for {e['username']}"
            for e in entries
            if e["reason"] != "auth"
        ]


@pytest.fixture(scope="module")
def haproxy() -> str:
    found = shutil.which("haproxy")
    if found is None:
        unavailable("haproxy is not installed (scripts/test installs it)")
    return found


_sources = count(10)


def new_source() -> str:
    """A loopback address no other connection of this module uses."""
    number = next(_sources)
    assert number < 65_000, "out of loopback addresses"
    return f"127.0.{number // 250}.{number % 250 + 2}"


def render_acl(directory: Path, password: str, admin_password: str) -> Path:
    """The shipped ACL file with the relays' password in, and the test's two extra users."""
    shipped = USERS_ACL.read_text()
    assert shipped.count(PASSWORD_PLACEHOLDER) == 1
    digest = hashlib.sha256(password.encode()).hexdigest()
    rendered = shipped.replace(PASSWORD_PLACEHOLDER, f"#{digest}")
    (relay_line,) = [line for line in rendered.splitlines() if line.startswith("user securechat ")]
    second = relay_line.replace(f"user {RELAY_USER} ", f"user {SECOND_USER} ", 1)
    admin = f"user {ADMIN_USER} on >{admin_password} ~* &* +@all"
    path = directory / "users.acl"
    path.write_text(f"{rendered.rstrip()}\n{second}\n{admin}\n")
    return path


def haproxy_env(port: int, relay_ports: Sequence[int]) -> dict[str, str]:
    """The shipped file's variables: where HAProxy listens, where the relays are."""
    first, second = relay_ports
    return {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "SECURECHAT_HAPROXY_BIND": f"127.0.0.1:{port}",
        "SECURECHAT_RELAY_1": f"127.0.0.1:{first}",
        "SECURECHAT_RELAY_2": f"127.0.0.1:{second}",
    }


def haproxy_check(haproxy: str, env: dict[str, str], *files: Path) -> str:
    done = subprocess.run(
        [haproxy, "-c", *(part for path in files for part in ("-f", str(path)))],
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT, env=env, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


async def start_relay(
    tmp_path: Path, name: str, url: str, metrics: int, *extra: str
) -> ServerProcess:
    return await start_process(
        tmp_path / name, 0,
        "--valkey", url,
        "--trusted-proxy", "127.0.0.1",  # HAProxy's address, as the relays see it
        "--max-connections-per-source", str(PER_SOURCE),
        "--history", str(HISTORY),
        "--new-rooms-burst", "1000000", "--source-new-rooms-burst", "1000000",
        "--metrics-address", f"127.0.0.1:{metrics}",
        "--log-level", "warning",
        *extra,
    )  # fmt: skip


@asynccontextmanager
async def deployed(haproxy: str, tmp_path: Path) -> AsyncIterator[Deployment]:
    """Valkey, two relays (the second as ``SECOND_USER``) and HAProxy, all stopped after."""
    password, admin_password = secrets.token_hex(16), secrets.token_hex(16)
    acl = render_acl(tmp_path, password, admin_password)
    valkey = start_valkey(
        tmp_path / "valkey", VALKEY_CONF, ["--aclfile", str(acl)], (ADMIN_USER, admin_password)
    )
    relays: list[ServerProcess] = []
    process: trio.Process | None = None
    try:
        metrics = [free_port(), free_port()]
        users = [RELAY_USER, SECOND_USER]
        for number, (user, port) in enumerate(zip(users, metrics, strict=True), 1):
            url = valkey.url_as(user, password)
            relays.append(await start_relay(tmp_path, f"relay{number}", url, port))
        port, stats = free_port(), tmp_path / "haproxy.sock"
        extra = tmp_path / "stats.cfg"
        extra.write_text(f"global\n    stats socket {stats} mode 600 level admin\n")
        env = haproxy_env(port, [relay.port for relay in relays])
        haproxy_check(haproxy, env, HAPROXY_CFG, extra)
        with (tmp_path / "haproxy.log").open("wb") as log:  # the child keeps its own copy
            process = await trio.lowlevel.open_process(
                [haproxy, "-db", "-f", str(HAPROXY_CFG), "-f", str(extra)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env,
            )  # fmt: skip
        deployment = Deployment(
            valkey, admin_password, relays, metrics, Front(port, stats, process)
        )
        await wait_status(deployment, ["UP", "UP"])
        yield deployment
        assert deployment.denied() == [], "a relay was refused: add it to users.acl"
    finally:
        if process is not None:
            if process.returncode is None:
                process.terminate()
            with trio.CancelScope(shield=True), trio.fail_after(10):
                await process.wait()
        for relay in relays:
            await relay.close()
        valkey.stop()


async def stat_lines(front: Front) -> list[list[str]]:
    """HAProxy's ``show stat`` as CSV rows."""
    with trio.fail_after(WAIT):
        stream = await trio.open_unix_socket(str(front.stats))
        async with stream:
            await stream.send_all(b"show stat\n")
            data = b""
            while chunk := await stream.receive_some():
                data += chunk
    return [line.split(",") for line in data.decode().splitlines() if line and line[0] != "#"]


async def statuses(front: Front) -> list[str]:
    """What HAProxy's checks say of relay1 and relay2 in the rooms backend: UP, DOWN, ..."""
    rows = {(row[0], row[1]): row[17] for row in await stat_lines(front)}
    return [rows["rooms", "relay1"], rows["rooms", "relay2"]]


async def wait_status(deployment: Deployment, expected: list[str]) -> None:
    with trio.fail_after(HEALTH_TIMEOUT):
        # A relay on its way shows as "UP 1/2" or "DOWN 1/2": only the end counts.
        while True:
            assert deployment.front.process.returncode is None, "haproxy exited"
            try:
                if await statuses(deployment.front) == expected:
                    return
            except OSError:  # HAProxy is starting: no stats socket yet
                pass
            await trio.sleep(0.1)


def websockets_open(metrics_port: int) -> int:
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=WAIT) as response:
        text: str = response.read().decode()
    (line,) = [s for s in text.splitlines() if s.startswith("securechat_websockets_open ")]
    return int(float(line.split()[1]))


async def open_counts(deployment: Deployment) -> list[int]:
    return [await trio.to_thread.run_sync(websockets_open, port) for port in deployment.metrics]


async def wait_counts(deployment: Deployment, total: int) -> list[int]:
    """Each relay's open WebSockets, once they add up to ``total``."""
    with trio.fail_after(WAIT):
        while True:
            counts = await open_counts(deployment)
            if sum(counts) == total:
                return counts
            await trio.sleep(0.05)


async def connect_from(
    nursery: trio.Nursery,
    port: int,
    room_id: str,
    source: str,
    headers: Sequence[tuple[str, str]] = (),
) -> Peer:
    """A WebSocket into ``room_id`` on 127.0.0.1:``port``, from the loopback address ``source``.

    It lives in ``nursery``; a refused handshake raises ``ConnectionRejected``.
    """
    client_id = new_client_id()
    extra = [(name.encode(), value.encode()) for name, value in headers]

    async def hold(*, task_status: trio.TaskStatus[WebSocketConnection]) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=source)
        try:
            async with trio.open_nursery() as own:  # where a refused handshake is raised
                ws = await wrap_client_stream(
                    own, stream, f"127.0.0.1:{port}", f"/ws/{room_id}?client={client_id}",
                    extra_headers=extra,
                )  # fmt: skip
                task_status.started(ws)
                try:
                    await trio.sleep_forever()
                finally:
                    with trio.CancelScope(shield=True):
                        await ws.aclose()
        except* ConnectionRejected as refused:
            raise refused.exceptions[0] from None
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    with trio.fail_after(WAIT):
        ws: WebSocketConnection = await nursery.start(hold)
    return Peer(ws, client_id)


def test_haproxy_accepts_the_shipped_file(haproxy: str, tmp_path: Path) -> None:
    """As compose runs it (relay names not resolvable here: warnings only), and as tested."""
    output = haproxy_check(haproxy, {"PATH": "/usr/sbin:/usr/bin"}, HAPROXY_CFG)
    warnings = [line for line in output.splitlines() if "WARNING" in line or "ALERT" in line]
    assert warnings, output  # relay1 and relay2 are compose's names, unknown here
    assert all("could not resolve address 'relay" in line for line in warnings), output
    output = haproxy_check(
        haproxy, haproxy_env(free_port(), [free_port(), free_port()]), HAPROXY_CFG
    )
    assert "WARNING" not in output, output
    assert "ALERT" not in output, output


def test_the_shipped_acl_file_lets_nobody_in_until_given_a_password(tmp_path: Path) -> None:
    """The placeholder is no password hash: Valkey refuses to start on the file as shipped."""
    server = shutil.which("valkey-server") or shutil.which("redis-server")
    assert server is not None
    done = subprocess.run(
        [server, str(VALKEY_CONF), "--port", str(free_port()), "--bind", "127.0.0.1",
         "--dir", str(tmp_path), "--aclfile", str(USERS_ACL), "--logfile", ""],
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "password hash must be exactly 64 characters" in done.stdout + done.stderr
    lines = USERS_ACL.read_text().splitlines()
    assert lines[0].startswith("user default off "), "the default user must be disabled"


async def test_rooms_go_through_haproxy_hashed_by_room(
    haproxy: str, tmp_path: Path, nursery: trio.Nursery
) -> None:
    async with deployed(haproxy, tmp_path) as deployment:
        front = deployment.front
        origin = [("Origin", front.origin)]

        # A chat: both members of a room reach the same relay, with a browser's Origin.
        room, token = new_room_id(), new_token()
        alice = await connect_from(nursery, front.port, room, new_source(), origin)
        await alice.hello(token)
        bob = await connect_from(nursery, front.port, room, new_source(), origin)
        await bob.hello(token)
        await alice.expect("system", event="joined", clientId=bob.client_id)
        counts = await wait_counts(deployment, 2)
        assert sorted(counts) == [0, 2], counts
        sent = [await alice.post(), await bob.post(), await alice.post()]  # 3 > --history
        seen = [
            [(await peer.expect("message"))["ciphertext"] for _ in sent] for peer in (alice, bob)
        ]
        assert seen[0] == seen[1]  # one order for both
        assert sorted(seen[0]) == sorted(m["ciphertext"] for m in sent)
        await bob.send({"type": "clear_history"})
        for peer in (alice, bob):
            await peer.expect("history_cleared", by=bob.client_id)
        await alice.ws.aclose()
        await bob.ws.aclose()
        await wait_counts(deployment, 0)

        # Other rooms spread over both relays, each room on one.
        peers = []
        for opened in range(1, MAX_ROOMS_TO_SPREAD + 1):
            peers.append(await connect_from(nursery, front.port, new_room_id(), new_source()))
            if min(await wait_counts(deployment, opened)) > 0:
                break
        assert min(await open_counts(deployment)) > 0, "every room went to one relay"
        for peer in peers:
            await peer.ws.aclose()
        await wait_counts(deployment, 0)

        # A foreign Origin is still refused, by the relay, through HAProxy.
        with pytest.raises(ConnectionRejected) as refused:
            await connect_from(
                nursery, front.port, room, new_source(), [("Origin", "http://evil.example")]
            )
        assert refused.value.status_code == 403

        # The relay sees each visitor's own address (HAProxy's X-Forwarded-For), not
        # HAProxy's and not one the visitor claims: the per-source cap counts them.
        crowded, room = new_source(), new_room_id()
        for _ in range(PER_SOURCE):
            await connect_from(nursery, front.port, room, crowded)
        spoofed = [("X-Forwarded-For", new_source())]
        extra = await connect_from(nursery, front.port, room, crowded, spoofed)
        assert await extra.closed_with() == TRY_AGAIN
        await connect_from(nursery, front.port, room, new_source())
        counts = await wait_counts(deployment, PER_SOURCE + 1)
        assert sorted(counts) == [0, PER_SOURCE + 1], counts


async def test_haproxy_takes_out_a_relay_without_valkey_and_a_dead_one(
    haproxy: str, tmp_path: Path, nursery: trio.Nursery
) -> None:
    async with deployed(haproxy, tmp_path) as deployment:
        front = deployment.front

        # Relay 2 loses Valkey (its user is switched off and its connections cut):
        # its /readyz says 503, HAProxy takes it out, new rooms all go to relay 1.
        deployment.admin("ACL", "SETUSER", SECOND_USER, "off")
        deployment.admin("CLIENT", "KILL", "USER", SECOND_USER)
        await wait_status(deployment, ["UP", "DOWN"])
        assert deployment.relays[1].process.returncode is None  # out, but running
        peers = [
            await connect_from(nursery, front.port, new_room_id(), new_source()) for _ in range(6)
        ]
        assert await wait_counts(deployment, 6) == [6, 0]
        for peer in peers:
            await peer.ws.aclose()
        await wait_counts(deployment, 0)

        # Valkey is back for it: relay 2 reconnects by itself and HAProxy takes it in.
        deployment.admin("ACL", "SETUSER", SECOND_USER, "on")
        await wait_status(deployment, ["UP", "UP"])

        # A chat on relay 1; then relay 1 dies (kill -9). HAProxy takes it out, and a
        # member coming back reaches relay 2, which has the room from Valkey.
        room, token = new_room_id(), new_token()
        alice = None
        for _ in range(MAX_ROOMS_TO_SPREAD):  # a room that hashes to relay 1
            alice = await connect_from(nursery, front.port, room, new_source())
            if await wait_counts(deployment, 1) == [1, 0]:
                break
            await alice.ws.aclose()
            await wait_counts(deployment, 0)
            room = new_room_id()
        assert alice is not None
        await alice.hello(token)
        sent = await alice.post()
        await alice.expect("message", ciphertext=sent["ciphertext"])
        deployment.relays[0].kill()
        await wait_status(deployment, ["DOWN", "UP"])
        back = await connect_from(nursery, front.port, room, new_source())
        history, _ = await back.hello(token)
        assert [m["ciphertext"] for m in history["messages"]] == [sent["ciphertext"]]
        assert await trio.to_thread.run_sync(websockets_open, deployment.metrics[1]) == 1


@asynccontextmanager
async def relay_as_user(
    tmp_path: Path, valkey: Valkey, password: str
) -> AsyncIterator[ServerProcess]:
    """One relay on ``valkey`` as the shipped ACL user, killed on exit."""
    url = valkey.url_as(RELAY_USER, password)
    relay = await start_relay(tmp_path, "relay", url, free_port())
    try:
        yield relay
    finally:
        await relay.close()


async def test_scripted_writes_outlive_a_kill_of_valkey_under_the_acl(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """A room written by the scripts comes back from the AOF after kill -9.

    Redis 7.0 (and Valkey before its fix) replays a script's writes from the AOF
    as a transaction checked against the *default* user's permissions: with a
    default user that may run nothing, they would be dropped at restart, silently.
    users.acl's default user is off (nobody can log in as it) but keeps them.
    """
    password, admin_password = secrets.token_hex(16), secrets.token_hex(16)
    acl = render_acl(tmp_path, password, admin_password)
    options = (VALKEY_CONF, ["--aclfile", str(acl)], (ADMIN_USER, admin_password))
    directory = tmp_path / "valkey"
    room, token = new_room_id(), new_token()
    valkey = start_valkey(directory, *options)
    try:
        async with relay_as_user(tmp_path, valkey, password) as relay:
            alice = await connect_from(nursery, relay.port, room, new_source())
            await alice.hello(token)
            sent = await alice.post()
            await alice.expect("message", ciphertext=sent["ciphertext"])
        valkey.process.kill()  # kill -9: the AOF was written before Valkey replied
        valkey.process.wait(timeout=10)
    finally:
        valkey.stop()
    valkey = start_valkey(directory, *options)
    try:
        async with relay_as_user(tmp_path, valkey, password) as relay:
            bob = await connect_from(nursery, relay.port, room, new_source())
            history, _ = await bob.hello(token)
            assert [m["ciphertext"] for m in history["messages"]] == [sent["ciphertext"]]
        log = (directory / "valkey.log").read_text()
        assert "NOPERM" not in log, log[-2000:]
    finally:
        valkey.stop()
