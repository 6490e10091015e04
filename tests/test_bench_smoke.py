"""The benchmark suite works: quick mode reports figures; the comparison relays speak the protocol.

The Valkey targets run in it too, each with its own redis-server (scripts/test installs it).

The attack benchmark (bench/attack.py) works too: its quick run prints a line per
attack, and its attacker answers a proof-of-work challenge, which main never sends.

No assertion here is about speed: the figures are checked for being there, not for their size.
"""

import asyncio
import base64
import hashlib
import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from bench import hostile, report, scenarios, siege
from bench.records import IdleRun, Results
from bench.scenarios import IDLE_ROOM_SIZE
from bench.servers import VALKEY, running
from tests.harness import b64url, fake_message, new_room_id, new_token

pytestmark = pytest.mark.slow

ROOT: Final = Path(__file__).resolve().parent.parent
SERVING: Final = re.compile(r"serving on (http://[0-9.]+:[0-9]+)")
TIMEOUT_S: Final = 10.0  # for one frame, or for the peer to start


def test_quick_ping_pong_reports_every_relay(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--scenario", "ping-pong",
         "--duration", "0.5", "--results-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [report] = tmp_path.glob("*.json")
    data = json.loads(report.read_text())
    runs = {run["target"]: run for run in data["load"]}
    valkey = {"valkey", "valkey-2"}
    assert set(runs) == {"securechat", "ephemeral", "quart-trio", "peer", *valkey}
    for run in runs.values():
        assert run["scenario"] == "ping-pong"
        assert run["delivered"] > 0
        assert run["expected"] >= run["delivered"]
        for figure in ("cpu_us_per_delivery", "deliveries_per_s", "server_cpu_percent"):
            assert isinstance(run[figure], float)
        assert isinstance(run["latency"]["p99_ms"], float)
        assert run["usage"]["server_rss_bytes"] > 0
        # Valkey's CPU is counted in the server's and shown apart; its memory only apart.
        if run["target"] in valkey:
            assert 0 <= run["usage"]["valkey_cpu_s"] <= run["usage"]["server_cpu_s"]
            assert run["usage"]["valkey_rss_bytes"] > 0
            assert isinstance(run["valkey_cpu_us_per_delivery"], float)
        else:
            assert run["usage"]["valkey_cpu_s"] is None
    assert data["ratios"]["ping-pong.cpu_us_per_delivery"].keys() == runs.keys()
    assert data["ran"].keys() == valkey
    # Two processes: `serve --workers 2` where serve offers it, else two on two ports.
    assert re.match(
        r"(serve --workers 2 on one port|2 serve --valkey processes)", data["ran"]["valkey-2"]
    )
    [versus_sqlite] = [
        entry for entry in data["targets"]
        if entry["target"].startswith("ping-pong: CPU per delivery of valkey")
    ]  # fmt: skip
    assert isinstance(versus_sqlite["met"], bool)
    [markdown] = tmp_path.glob("*.md")
    assert "| peer |" in markdown.read_text()
    assert "| peer |" in result.stdout
    assert "| valkey-2 |" in result.stdout
    assert "server CPU per delivery, valkey / securechat: **" in result.stdout


def test_valkey_memory_is_reported_apart_from_the_relays() -> None:
    """Idle connections on a Valkey relay: the relay's RSS and Valkey's, each on its own."""

    async def hold() -> list[IdleRun]:
        async with running(VALKEY) as server:
            runs = await scenarios.idle_connections(server, (IDLE_ROOM_SIZE,))
        assert all(process.returncode is not None for process in server.processes)
        assert server.valkey is not None
        assert server.valkey.process.returncode is not None  # stopped by its PID
        return runs

    [run] = asyncio.run(hold())
    assert (run.held, run.failure) == (IDLE_ROOM_SIZE, None)
    assert run.rss_bytes > 0
    assert run.valkey_baseline_rss_bytes is not None
    assert run.valkey_rss_bytes is not None
    assert run.valkey_rss_bytes > 0
    markdown, data = report.build(Results(idle=[run]), {}, 0.0, ["bench"])
    assert f"{VALKEY.name} at {run.wanted}: Valkey's RSS (not counted above)" in markdown
    assert isinstance(data["idle"][0]["valkey_rss_per_connection_bytes"], float)


@pytest.fixture(params=["websockets_relay", "quart_trio_relay"])
def peer_url(request: pytest.FixtureRequest) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", f"bench.peers.{request.param}", "--port", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = SERVING.search(line)
        assert match, line
        yield match.group(1).replace("http://", "ws://")
    finally:
        process.kill()
        process.wait(timeout=TIMEOUT_S)
        if process.stdout is not None:
            process.stdout.close()


def receive(connection: ClientConnection) -> dict[str, Any]:
    frame = json.loads(connection.recv(timeout=TIMEOUT_S))
    assert isinstance(frame, dict)
    return frame


@contextmanager
def join(base: str, room: str, client: str, token: str) -> Iterator[ClientConnection]:
    with connect(f"{base}/ws/{room}?client={client}", open_timeout=TIMEOUT_S) as connection:
        connection.send(json.dumps({"type": "hello", "auth": token}))
        yield connection


def test_peer_relays_with_history_presence_and_a_verifier(peer_url: str) -> None:
    room, token = new_room_id(), new_token()
    with join(peer_url, room, "alice01", token) as alice:
        assert receive(alice) == {"type": "history", "messages": []}
        assert receive(alice)["participants"] == ["alice01"]
        message = fake_message()
        alice.send(json.dumps(message))
        echo = receive(alice)
        assert echo["type"] == "message"
        assert (echo["id"], echo["from"]) == (1, "alice01")
        assert (echo["iv"], echo["ciphertext"]) == (message["iv"], message["ciphertext"])
        assert isinstance(echo["sentAt"], int)

        with join(peer_url, room, "bob02", token) as bob:
            assert receive(bob) == {"type": "history", "messages": [echo]}
            connected = receive(bob)
            assert (connected["event"], connected["participants"]) == (
                "connected",
                ["alice01", "bob02"],
            )
            assert receive(alice)["event"] == "joined"
            bob.send(json.dumps(fake_message()))
            assert receive(bob)["id"] == receive(alice)["id"] == 2
        assert receive(alice)["event"] == "left"

        with join(peer_url, room, "mallory", new_token()) as mallory:
            with pytest.raises(ConnectionClosed) as closed:
                mallory.recv(timeout=TIMEOUT_S)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4401


def test_quick_attack_reports_every_attack(tmp_path: Path) -> None:
    figures = tmp_path / "attack.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "attack", "--quick", "--fuzz-seconds", "1",
         "--json", str(figures)],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    results = {entry["name"]: entry for entry in json.loads(figures.read_text())}
    assert list(results) == ["disk", "memory", "squat", "descriptors", "log", "crash"]
    for name, entry in results.items():
        assert isinstance(entry["met"], bool)
        assert re.search(rf"^{name} +.+\| target: .+: (met|MISSED)$", result.stdout, re.MULTILINE)
    disk = results["disk"]["figures"]
    assert disk["rooms_created"] > 0
    assert disk["rooms_free"] + disk["rooms_paid"] == disk["rooms_created"]
    assert results["memory"]["figures"]["full_rooms"] > 0
    assert "--max-connections-per-source" in results["memory"]["figures"]["lifted"]
    # The squat takes every slot of its --max-rooms 200, so a brand-new room is refused.
    squat = results["squat"]["figures"]
    assert squat["held"] == 200
    assert squat["new_room_refusal"] == {"close 4503": 1}
    flood = results["descriptors"]["figures"]
    assert flood["server_open_files"] == [256, 256]
    assert len(flood["legit"]) == 3
    assert results["log"]["figures"]["frames"] == 10
    assert set(results["crash"]["figures"]["alive"]) >= {"upgrade + 1 byte", "unmasked frame"}
    assert "targets met:" in result.stdout


async def _challenging_relay(bits: int, proofs: list[bytes]) -> tuple[str, Callable[[], None]]:
    """A relay that answers every hello with a proof-of-work challenge, then `connected`."""
    challenge = os.urandom(16)

    async def handler(connection: ServerConnection) -> None:
        hello = json.loads(await connection.recv())
        await connection.send(json.dumps(
            {"type": "challenge", "challenge": b64url(challenge), "bits": bits}
        ))  # fmt: skip
        answer = json.loads(await connection.recv())
        assert answer["auth"] == hello["auth"]
        nonce = base64.urlsafe_b64decode(answer["proof"] + "=" * (-len(answer["proof"]) % 4))
        assert len(nonce) <= 16
        digest = int.from_bytes(hashlib.sha256(challenge + nonce).digest(), "big")
        assert digest >> (256 - bits) == 0
        proofs.append(nonce)
        await connection.send(json.dumps({"type": "system", "event": "connected"}))
        await connection.wait_closed()

    server = await serve(handler, "127.0.0.1", 0)
    port = next(iter(server.sockets)).getsockname()[1]
    return f"http://127.0.0.1:{port}", server.close


def test_attacker_solves_a_challenge_within_its_budget() -> None:
    async def attack() -> None:
        proofs: list[bytes] = []
        base_url, stop = await _challenging_relay(12, proofs)
        try:
            tally: Counter[str] = Counter()
            solver = siege.Solver(budget_s=TIMEOUT_S)
            attacker = siege.Attacker(hostile.token(), tally, solver)
            assert await siege.join(base_url, hostile.room_id(), "abcd1234", attacker, TIMEOUT_S)
            attacker.close()
            assert (solver.solved, tally["challenge solved"], len(proofs)) == (1, 1, 1)
            spent = siege.Solver(budget_s=0.0)
            refused = siege.Attacker(hostile.token(), tally, spent)
            assert not await siege.join(base_url, hostile.room_id(), "abcd1234", refused, TIMEOUT_S)
            assert (spent.gave_up, tally["challenge given up"], len(proofs)) == (1, 1, 1)
        finally:
            stop()

    asyncio.run(attack())
