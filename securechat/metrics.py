"""Metrics for monitoring: the Prometheus text format, on a listener of its own.

Off unless ``--metrics-address`` names one, and then on a loopback address
unless ``--metrics-allow-remote`` says otherwise: the figures say how busy the
server is, which is nobody else's business. ``GET /metrics`` answers with
totals and gauges only (docs/deploy.md lists each): nothing per room, per
client or per address, so there is nothing about a person to read there.

The text is written here rather than with ``prometheus-client``: the format is
a few lines per metric, the values are read from their owners at scrape time
(``counters.COUNTS``, the registry, the connection gauge, the storage quota),
and the server image keeps its dependencies. The listener is Hypercorn with
the boundary's hardening (``boundary.BoundaryConfig``): its own small connection
cap, the security headers, no access log.
"""

import functools
import ipaddress
import logging
import os
import resource
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, final

import hypercorn.trio
import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

from securechat import __version__
from securechat.boundary import BoundaryConfig
from securechat.capacity import ConnectionGauge
from securechat.counters import COUNTS
from securechat.errors import CloseCode
from securechat.registry import Registry
from securechat.storage import Quota

logger: Final = logging.getLogger("securechat.metrics")

METRICS_PATH: Final = "/metrics"
CONTENT_TYPE: Final = b"text/plain; version=0.0.4; charset=utf-8"
# Open connections to the metrics listener: a scraper or two and someone with curl.
METRICS_MAX_CONNECTIONS: Final = 8
# Hypercorn closes a socket over --max-frame itself, out of the counters' sight.
NOT_COUNTED: Final = frozenset({CloseCode.TOO_BIG})
STARTED: Final = time.time()  # when this module loaded: at the server process's start


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` as (host, port); raises ValueError."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"not HOST:PORT, e.g. 127.0.0.1:9787: {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"an IPv6 address goes in brackets, e.g. [::1]:9787: {text!r}")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only: ``localhost`` or a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve anywhere


@final
@dataclass(frozen=True, slots=True)
class Readings:
    """Where the gauges are read, at each scrape."""

    registry: Registry  # rooms active, WebSockets open
    gauge: ConnectionGauge  # TCP connections of the main listener
    quota: Quota  # storage used and its limits
    max_rooms: int


@final
class _Text:
    """The exposition being written: HELP and TYPE lines, then the samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(self, name: str, kind: str, text: str, samples: Iterable[tuple[str, float]]) -> None:
        self.lines.append(f"# HELP {name} {text}\n# TYPE {name} {kind}\n")
        self.lines.extend(f"{name}{labels} {_number(value)}\n" for labels, value in samples)

    def one(self, name: str, kind: str, text: str, value: float) -> None:
        self.metric(name, kind, text, [("", value)])


def render(readings: Readings) -> str:
    """The metrics in the Prometheus text format (version 0.0.4)."""
    live = readings.registry.statistics()
    tcp = readings.gauge.statistics()
    quota = readings.quota
    out = _Text()
    out.metric(
        "securechat_info", "gauge", "The server's version.", [(_labels(version=__version__), 1)]
    )
    gauges = [
        ("rooms_active", "Rooms live in memory now.", live.rooms),
        ("rooms_active_limit", "Live rooms at most (--max-rooms).", readings.max_rooms),
        ("websockets_open", "WebSockets open now.", live.connections),
        ("connections_open", "TCP connections open now.", tcp.open),
        ("connections_limit", "TCP connections at most.", tcp.limit),
        ("storage_bytes", "Bytes of stored rooms and messages.", quota.stored_bytes),
        ("storage_bytes_limit", "Stored bytes at most (--max-storage-mb).", quota.max_bytes),
        ("storage_rooms", "Rooms stored, tombstones included.", quota.stored_rooms),
        ("storage_rooms_limit", "Stored rooms at most (--max-stored-rooms).", quota.max_rooms),
    ]
    counters = [
        ("rooms_created_total", "Rooms created (a first hello).", COUNTS.rooms_created),
        ("joins_total", "Connections admitted into a room.", COUNTS.joins),
        ("messages_total", "Messages stored and relayed.", COUNTS.messages),
        ("signals_total", "Signals relayed.", COUNTS.signals),
        ("challenges_total", "Proofs of work asked of new rooms.", COUNTS.challenges),
        (
            "connections_refused_total",
            "TCP connections refused by a connection cap.",
            COUNTS.http_refusals,
        ),
        (
            "connections_failed_total",
            "TCP connections closed because handling them raised.",
            tcp.failed,
        ),
    ]
    for kind, rows in (("gauge", gauges), ("counter", counters)):
        for name, text, value in rows:
            out.one(f"securechat_{name}", kind, text, value)
    out.metric(
        "securechat_closes_total",
        "counter",
        "WebSockets closed by the server, by close code.",
        (
            (_labels(code=str(code.value)), n)
            for code, n in COUNTS.closes.items()
            if code not in NOT_COUNTED
        ),
    )
    out.metric(
        "securechat_errors_total",
        "counter",
        "Error envelopes sent, by error code.",
        ((_labels(code=code.value), n) for code, n in COUNTS.errors.items()),
    )
    out.metric(
        "securechat_http_responses_total",
        "counter",
        "HTTP responses by status, WebSocket handshake refusals included.",
        ((_labels(status=str(s)), n) for s, n in sorted(COUNTS.responses.items())),
    )
    _process(out)
    return "".join(out.lines)


def _process(out: _Text) -> None:
    """The process's own figures, under the names every Prometheus client library uses."""
    times = os.times()
    out.one(
        "process_start_time_seconds",
        "gauge",
        "Start time, in seconds since the epoch.",
        round(STARTED),
    )
    out.one(
        "process_cpu_seconds_total",
        "counter",
        "User and system CPU time.",
        round(times.user + times.system, 3),
    )
    out.one(
        "process_max_fds",
        "gauge",
        "File descriptors at most.",
        resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    )
    try:  # Linux; elsewhere these two are left out
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
        out.one(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory.",
            pages * resource.getpagesize(),
        )
        out.one(
            "process_open_fds", "gauge", "File descriptors open.", len(os.listdir("/proc/self/fd"))
        )
    except OSError:
        pass


def _number(value: float) -> str:
    """An integer exactly (byte counts pass 2**53 only in theory), a float as Python writes it."""
    return str(value) if isinstance(value, int) else repr(value)


def _labels(**labels: str) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}"


@final
class MetricsApp:
    """The ASGI app of the metrics listener: ``GET /metrics``, and 404 or 405 else."""

    def __init__(self, readings: Readings) -> None:
        self._readings = readings

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "lifespan":
            while (event := await receive())["type"] != "lifespan.shutdown":
                if event["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": ""})
            return
        if scope["path"] != METRICS_PATH:
            status, body = 404, b"404 Not Found\n"
        elif scope["method"] not in ("GET", "HEAD"):
            status, body = 405, b"405 Method Not Allowed\n"
        else:
            status, body = 200, render(self._readings).encode("utf-8")
        content_type = CONTENT_TYPE if status == 200 else b"text/plain; charset=utf-8"
        headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if scope["method"] == "HEAD":
            body = b""
        await send({"type": "http.response.body", "body": body, "more_body": False})


def metrics_config(host: str, port: int) -> BoundaryConfig:
    config = BoundaryConfig(ConnectionGauge(METRICS_MAX_CONNECTIONS), h2c=False)
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.include_server_header = False
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


async def serve_metrics(
    address: str,
    readings: Readings,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``/metrics`` on ``address`` until cancelled; report its URL when listening.

    Error handling: an address that cannot be bound raises ``ListenError`` (from
    ``BoundaryConfig``) before anything is reported.
    """
    host, port = parse_address(address)
    app = MetricsApp(readings)
    async with trio.open_nursery() as nursery:
        serve = functools.partial(hypercorn.trio.serve, app, metrics_config(host, port))
        urls: list[str] = await nursery.start(serve)
        url = urls[0] + METRICS_PATH
        logger.info("metrics on %s", url)
        task_status.started(url)
