"""Routes, security headers on every response, and WebSocket handshake refusals."""

import http.client
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
import trio

from securechat.headers import SECURITY_HEADERS
from tests.harness import ServerHandle, connect, new_room_id, new_token

pytestmark = pytest.mark.usefixtures("server")


async def http_get(
    server: ServerHandle, path: str, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    """One real HTTP/1.1 request: status, headers (lower-case names), body."""

    def request() -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        try:
            conn.request(method, path)
            response = conn.getresponse()
            headers = {k.lower(): v for k, v in response.getheaders()}
            return response.status, headers, response.read()
        finally:
            conn.close()

    with trio.fail_after(10):
        return await trio.to_thread.run_sync(request)


def assert_security_headers(headers: dict[str, str]) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, name
    policy = headers["content-security-policy"]
    for weak in ("'unsafe-inline'", "'unsafe-eval'", "*"):
        assert weak not in policy
    for feature in ("camera", "microphone", "geolocation", "payment", "usb"):
        assert f"{feature}=()" in headers["permissions-policy"]


@pytest.mark.parametrize(
    ("path", "status", "content_type", "body"),
    [
        ("/", 200, "text/plain; charset=utf-8", b"API OK"),
        ("/healthz", 200, "text/plain; charset=utf-8", b"ok"),
        ("/app.js", 200, "text/javascript; charset=utf-8", None),
        ("/app.css", 200, "text/css; charset=utf-8", None),
        ("/new_chat", 200, "text/html; charset=utf-8", None),
        ("/room/oKGio6SlpqeoqaqrrK2urw", 200, "text/html; charset=utf-8", None),
        ("/room/" + "a" * 64, 200, "text/html; charset=utf-8", None),
        ("/room/" + "a" * 65, 404, "text/plain; charset=utf-8", None),
        ("/room/bad.id", 404, "text/plain; charset=utf-8", None),
        ("/room/", 404, "text/plain; charset=utf-8", None),
        ("/nope", 404, "text/plain; charset=utf-8", None),
        ("/ws/abc", 400, "text/plain; charset=utf-8", None),  # a socket route without upgrade
        ("/index.html", 404, "text/plain; charset=utf-8", None),
        ("/../pyproject.toml", 404, "text/plain; charset=utf-8", None),
    ],
)
async def test_routes_carry_security_headers(
    server: ServerHandle, path: str, status: int, content_type: str, body: bytes | None
) -> None:
    got_status, headers, got_body = await http_get(server, path)
    assert got_status == status
    assert headers["content-type"] == content_type
    if body is not None:
        assert got_body == body
    assert_security_headers(headers)
    assert "server" not in headers


async def test_page_is_the_same_document_for_both_routes(server: ServerHandle) -> None:
    _, _, new_chat = await http_get(server, "/new_chat")
    _, _, room = await http_get(server, "/room/abc")
    assert new_chat == room
    assert b"<script" in new_chat
    assert b'src="/app.js"' in new_chat


async def test_post_is_refused_with_headers(server: ServerHandle) -> None:
    status, headers, _ = await http_get(server, "/", method="POST")
    assert status == 405
    assert_security_headers(headers)


@dataclass
class Refusal:
    status_code: int
    headers: dict[str, str]


async def rejected(url: str, headers: list[tuple[bytes, bytes]] | None = None) -> Refusal:
    """Attempt a WebSocket upgrade that the server must refuse; return its answer."""
    parts = urlsplit(url)
    request_headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    request_headers.update({k.decode(): v.decode() for k, v in headers or []})

    def request() -> Refusal:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
        try:
            conn.request("GET", f"{parts.path}?{parts.query}", headers=request_headers)
            response = conn.getresponse()
            response.read()
            return Refusal(response.status, {k.lower(): v for k, v in response.getheaders()})
        finally:
            conn.close()

    with trio.fail_after(10):
        return await trio.to_thread.run_sync(request)


@pytest.mark.parametrize(
    ("room_id", "client_id"),
    [
        ("bad.room", "abcd"),
        ("a" * 65, "abcd"),
        ("room", "abc"),  # too short
        ("room", "a" * 17),  # too long
        ("room", "ab$d"),
        ("room", ""),
    ],
)
async def test_bad_ids_are_refused_at_handshake(
    server: ServerHandle, room_id: str, client_id: str
) -> None:
    refusal = await rejected(f"{server.ws_base}/ws/{room_id}?client={client_id}")
    assert refusal.status_code == 400
    assert_security_headers(refusal.headers)


async def test_missing_client_is_refused(server: ServerHandle) -> None:
    refusal = await rejected(f"{server.ws_base}/ws/room")
    assert refusal.status_code == 400


async def test_client_id_case_is_kept(nursery: trio.Nursery, server: ServerHandle) -> None:
    peer = await connect(nursery, server, new_room_id(), "AbCd_-9")
    _, connected = await peer.hello(new_token())
    assert connected["clientId"] == "AbCd_-9"


async def test_foreign_origin_is_refused(server: ServerHandle) -> None:
    refusal = await rejected(server.ws_url("room", "abcd"), [(b"Origin", b"https://evil.example")])
    assert refusal.status_code == 403
    assert_security_headers(refusal.headers)
    # Same host, other port: another origin too.
    other_port = f"http://127.0.0.1:{server.port + 1}".encode()
    assert (
        await rejected(server.ws_url("room", "abcd"), [(b"Origin", other_port)])
    ).status_code == 403
    assert (
        await rejected(server.ws_url("room", "abcd"), [(b"Origin", b"null")])
    ).status_code == 403


async def test_same_origin_and_no_origin_are_allowed(
    nursery: trio.Nursery, server: ServerHandle
) -> None:
    origin = f"http://127.0.0.1:{server.port}".encode()
    room, token = new_room_id(), new_token()
    with_origin = await connect(nursery, server, room, headers=[(b"Origin", origin)])
    await with_origin.hello(token)
    without = await connect(nursery, server, room)
    await without.hello(token)


async def test_allowed_origin_option(nursery: trio.Nursery, tmp_path: object) -> None:
    from pathlib import Path

    from tests.harness import make_config, start_server

    assert isinstance(tmp_path, Path)
    proxy = await start_server(
        nursery, make_config(tmp_path / "d2", allowed_origins=("https://chat.example.org",))
    )
    try:
        peer = await connect(
            nursery, proxy, new_room_id(), headers=[(b"Origin", b"https://chat.example.org")]
        )
        await peer.hello(new_token())
        refusal = await rejected(
            proxy.ws_url("room", "abcd"), [(b"Origin", b"https://other.example.org")]
        )
        assert refusal.status_code == 403
    finally:
        await proxy.stop()


async def raw_upgrade(stream: trio.SocketStream, port: int, extra: str = "") -> tuple[bytes, bytes]:
    """Send a WebSocket upgrade by hand; return the response head and what followed it."""
    await stream.send_all(
        f"GET /ws/room?client=abcd HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\n{extra}"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    raw = b""
    while b"\r\n\r\n" not in raw:
        raw += await stream.receive_some(4096)
    head, _, rest = raw.partition(b"\r\n\r\n")
    return head, rest


async def test_pings_are_sent_when_configured(nursery: trio.Nursery, tmp_path: object) -> None:
    from pathlib import Path

    from tests.harness import make_config, start_server

    assert isinstance(tmp_path, Path)
    pinging = await start_server(nursery, make_config(tmp_path / "d3", ping_interval=0.2))
    try:
        # A raw socket: complete the upgrade, then wait for a ping frame (opcode 0x9).
        with trio.fail_after(5):
            stream = await trio.open_tcp_stream("127.0.0.1", pinging.port)
            async with stream:
                head, rest = await raw_upgrade(stream, pinging.port)
                assert head.startswith(b"HTTP/1.1 101")
                while not rest:
                    rest = await stream.receive_some(4096)
                assert rest[0] == 0x89  # FIN + ping
    finally:
        await pinging.stop()


async def test_compression_is_declined(server: ServerHandle) -> None:
    # Browsers always offer permessage-deflate; ciphertext does not compress.
    offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            head, _ = await raw_upgrade(stream, server.port, offer)
    assert head.lower().startswith(b"http/1.1 101")
    assert b"sec-websocket-extensions" not in head.lower()


def _tasks_named(name: str) -> int:
    """Tasks of this Trio run whose name ends with ``name``."""
    root = trio.lowlevel.current_root_task()
    assert root is not None
    found, todo = 0, [root]
    while todo:
        task = todo.pop()
        found += task.name.endswith(name)
        todo.extend(child for nursery in task.child_nurseries for child in nursery.child_tasks)
    return found


async def test_one_task_pings_every_socket(nursery: trio.Nursery, tmp_path: object) -> None:
    # Hypercorn kept a sleeping ping task per WebSocket (some 3.4 KiB each, for
    # as long as the socket lived); the server's one Pinger pings them all.
    from pathlib import Path

    from tests.harness import joined_peer, make_config, new_room_id, new_token, start_server

    assert isinstance(tmp_path, Path)
    pinging = await start_server(nursery, make_config(tmp_path / "d4", ping_interval=0.1))
    try:
        room, token = new_room_id(), new_token()
        peers = [await joined_peer(nursery, pinging, room, token) for _ in range(5)]
        await trio.sleep(0.35)  # a few rounds of pings, which trio-websocket answers
        assert _tasks_named("_send_pings") == 0
        assert _tasks_named("Pinger.run") == 1
        for peer in peers:  # answered pings keep every socket open
            sent = await peer.post()
            while (await peer.receive()).get("ciphertext") != sent["ciphertext"]:
                pass  # the others' joins and posts
    finally:
        await pinging.stop()
