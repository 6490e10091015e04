"""The metrics endpoint: off by default, on its own listener, totals only, nothing per person.

A real server process with ``--metrics-address``, real WebSocket traffic, and
the Prometheus client's own parser reading what ``/metrics`` says.
"""

import http.client
import importlib.metadata
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import open_websocket_url

from securechat.headers import SECURITY_HEADERS
from tests.containers import free_port
from tests.harness import Peer, b64url, new_client_id, new_room_id, new_token
from tests.process import ServerProcess, start_process

pytestmark = pytest.mark.slow

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


def get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, headers, response.read().decode()
    finally:
        conn.close()


def parse(text: str) -> Samples:
    """Every sample, by name and labels, as the reference parser reads them."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def listening_ports(pid: int) -> set[int]:
    """The TCP ports the process ``pid`` listens on, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = fd.readlink().name if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.fixture
async def metrics_server(tmp_path: Path) -> AsyncIterator[tuple[ServerProcess, int]]:
    port = free_port()
    server = await start_process(
        tmp_path / "data", 0, "--metrics-address", f"127.0.0.1:{port}",
        "--new-rooms-burst", "1000", "--source-new-rooms-burst", "1000",
    )  # fmt: skip
    try:
        yield server, port
    finally:
        await server.close()


async def traffic(server: ServerProcess, room: str, token: str) -> list[str]:
    """Two join and talk, a third has the wrong token; return the clientIds used."""
    alice_id, bob_id, mallory_id = new_client_id(), new_client_id(), new_client_id()
    with trio.fail_after(20):
        async with (
            open_websocket_url(server.ws_url(room, alice_id)) as alice_ws,
            open_websocket_url(server.ws_url(room, bob_id)) as bob_ws,
        ):
            alice, bob = Peer(alice_ws, alice_id), Peer(bob_ws, bob_id)
            await alice.hello(token)
            await bob.hello(token)
            await alice.expect("system", event="joined")
            for _ in range(3):
                await alice.post()
                await alice.expect("message")
                await bob.expect("message")
            await bob.send({"type": "signal", "iv": b64url(bytes(12)), "ciphertext": "AAAA" * 8})
            await alice.expect("signal")
            await bob.send_raw("not json")
            await bob.expect("error", code="bad_json")
            async with open_websocket_url(server.ws_url(room, mallory_id)) as mallory_ws:
                mallory = Peer(mallory_ws, mallory_id)
                await mallory.send({"type": "hello", "auth": new_token()})
                assert await mallory.closed_with() == 4401
    return [alice_id, bob_id, mallory_id]


async def test_metrics_count_real_traffic_and_name_no_one(
    metrics_server: tuple[ServerProcess, int],
) -> None:
    server, port = metrics_server
    room, token = new_room_id(), new_token()
    clients = await traffic(server, room, token)
    assert get(server.port, "/healthz")[0] == 200
    assert get(server.port, "/nowhere")[0] == 404

    status, headers, body = await trio.to_thread.run_sync(get, port, "/metrics")
    assert status == 200
    assert headers["content-type"] == CONTENT_TYPE
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, name
    samples = parse(body)
    expected = {
        ("securechat_rooms_created_total", ()): 1,
        ("securechat_joins_total", ()): 2,
        ("securechat_messages_total", ()): 3,
        ("securechat_signals_total", ()): 1,
        ("securechat_errors_total", (("code", "bad_json"),)): 1,
        ("securechat_errors_total", (("code", "rate_limited"),)): 0,
        ("securechat_closes_total", (("code", "4401"),)): 1,
        ("securechat_closes_total", (("code", "4409"),)): 0,
        ("securechat_http_responses_total", (("status", "200"),)): 1,
        ("securechat_http_responses_total", (("status", "404"),)): 1,
        ("securechat_storage_rooms", ()): 1,
        ("securechat_rooms_active_limit", ()): 10_000,
        ("securechat_info", (("version", importlib.metadata.version("securechat")),)): 1,
    }
    for key, count in expected.items():
        assert samples.get(key) == count, (key, samples.get(key))
    assert samples[("securechat_storage_bytes", ())] > 3 * 40
    assert samples[("securechat_rooms_active", ())] in (0, 1)  # it lingers a few seconds
    assert samples[("securechat_websockets_open", ())] == 0
    assert samples[("process_open_fds", ())] > 0
    assert ("securechat_closes_total", (("code", "1009"),)) not in samples  # Hypercorn's own

    # Nothing of a room, a person or an address: only the labels listed in the docs.
    for secret in (room, token, *clients, "127.0.0.1"):
        assert secret not in body
    labels = {name for (_, pairs) in samples for name, _ in pairs}
    assert labels == {"code", "status", "version"}

    # A listener of its own: the public one does not serve them, and it serves nothing else.
    assert listening_ports(server.process.pid) == {server.port, port}
    assert get(server.port, "/metrics")[0] == 404
    assert get(port, "/")[0] == 404
    assert get(port, "/metrics", "POST")[0] == 405


async def test_no_metrics_listener_by_default(tmp_path: Path) -> None:
    server = await start_process(tmp_path / "data")
    try:
        assert listening_ports(server.process.pid) == {server.port}
        status, _, _ = await trio.to_thread.run_sync(get, server.port, "/metrics")
        assert status == 404
    finally:
        await server.close()
