"""Runs the whole server: storage, the room registry and Hypercorn, in one nursery.

The module that launches Hypercorn (``boundary`` hardens its per-connection
classes). ``serve`` is used by the command line and, unchanged, by the tests,
which start it on an ephemeral port.
"""

import contextlib
import gc
import logging
from typing import Final

import hypercorn.trio
import trio
from hypercorn.protocol import ws_stream

from securechat import boundary
from securechat.app import create_app
from securechat.budget import BudgetSettings, CreationBudget
from securechat.capacity import (
    ConnectionGauge,
    effective_max_connections,
    quiet_accept_failures,
    raise_descriptor_limit,
)
from securechat.config import Config
from securechat.headers import SecurityHeaders
from securechat.limits import (
    HTTP_CONNECTIONS_PER_SOURCE,
    MIB,
    SHUTDOWN_CLOSE_SECONDS,
    TOMBSTONE_DAYS,
)
from securechat.memory import MemoryStorage
from securechat.metrics import Readings, serve_metrics
from securechat.registry import Registry, RoomMaker
from securechat.room import RoomSettings
from securechat.sources import SourceLimiter, parse_networks
from securechat.sqlite import SqliteStorage
from securechat.storage import Quota, Retention, Storage
from securechat.valkey.shared import shared_rooms
from securechat.valkey.storage import ValkeyStorage, open_valkey
from securechat.wsstream import Pinger

logger: Final = logging.getLogger("securechat.server")

# CPython's cyclic collector by default runs a young collection every 700 net
# allocations, and every 100 of those a full one that walks every object the
# server holds: some 300 per open connection. With 2,000 connections the
# defaults spent about half of the server's CPU in the collector, in full
# collections of 0.2 s each. Per-frame objects are nearly all freed by
# reference counting; the collector is only for cycles, which can wait. Young
# collections 14 times rarer halve that CPU; larger ones (50,000) stalled the
# event loop long enough to double the join storm's p99.
GC_THRESHOLDS: Final = (10_000, 10, 10)


class _UncompressedHandshake(ws_stream.Handshake):
    """A WebSocket handshake that never agrees to permessage-deflate.

    Hypercorn accepts compression whenever a client offers it, with no setting
    to refuse (pgjones/hypercorn#307), and browsers always offer it. Ciphertext
    in base64url hardly compresses, while deflate costs CPU on every frame and a
    zlib context per socket. Forgetting the client's offer makes Hypercorn
    answer without the extension, which is what RFC 7692 asks of a server that
    declines.
    """

    def __init__(self, headers: list[tuple[bytes, bytes]], http_version: str) -> None:
        super().__init__(headers, http_version)
        self.extensions = None


def tune_garbage_collector() -> None:
    """Leave startup's objects out of every collection, and collect less often.

    For the server process (the command line calls it before serving): tests
    that run ``serve`` in their own process keep their interpreter's settings.
    """
    gc.collect()
    gc.freeze()  # modules, classes and functions: never garbage, no need to walk them
    gc.set_threshold(*GC_THRESHOLDS)


def hypercorn_config(config: Config, gauge: ConnectionGauge) -> boundary.BoundaryConfig:
    per_source = config.max_connections_per_source
    hc = boundary.BoundaryConfig(
        gauge,
        h2c=config.h2c,
        peers=SourceLimiter(per_source + HTTP_CONNECTIONS_PER_SOURCE if per_source else 0),
        trusted_proxies=parse_networks(config.trusted_proxies),
    )
    host = f"[{config.host}]" if ":" in config.host else config.host
    hc.bind = [f"{host}:{config.port}"]
    hc.websocket_max_message_size = config.max_frame  # over it Hypercorn closes with 1009
    # Pings keep idle sockets open through proxies; one task pings every socket
    # (wsstream.Pinger), which serve runs, instead of Hypercorn's task per socket.
    hc.websocket_ping_interval = config.ping_interval or None
    hc.pinger = Pinger(config.ping_interval) if config.ping_interval else None
    hc.include_server_header = False
    hc.accesslog = None  # no access log: it would record who talked to which room
    hc.errorlog = logging.getLogger("hypercorn.error")  # through our handler, not a second one
    hc.graceful_timeout = SHUTDOWN_CLOSE_SECONDS
    return hc


def retention(config: Config) -> Retention:
    """How long rooms are kept, from the options (0 means: for ever, or as confirmed rooms)."""
    hour_ms, day_ms = 3_600_000, 86_400_000
    confirmed = config.retention_days * day_ms or None
    unconfirmed = config.unconfirmed_retention_hours * hour_ms or confirmed
    if confirmed is not None and unconfirmed is not None:
        unconfirmed = min(unconfirmed, confirmed)
    return Retention(confirmed, unconfirmed, tombstone_ms=TOMBSTONE_DAYS * day_ms)


async def serve(
    config: Config,
    shutdown: trio.Event,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``shutdown`` is set; report the bound base URL when listening.

    Resource handling: opens the storage and closes it after every room task and
    the HTTP server have stopped. On shutdown every WebSocket gets 1001 first.
    Raises the process's soft descriptor limit to its hard limit, and caps open
    TCP connections below it (``capacity.effective_max_connections``).

    Error handling: raises ``StorageError`` for an unusable data dir and
    ``OSError`` (inside an exception group) when the address cannot be bound.
    """
    ws_stream.Handshake = _UncompressedHandshake  # type: ignore[misc]
    boundary.install()
    quiet_accept_failures()
    descriptors = raise_descriptor_limit()
    gauge = ConnectionGauge(effective_max_connections(config.max_connections, descriptors))
    logger.debug("descriptors %d; at most %d connections", descriptors, gauge.statistics().limit)
    # A maximal message, base64url'd, with its IV, sender and row: 2 x is generous.
    reserve = 2 * config.max_ciphertext
    quota = Quota(config.max_storage_mb * MIB, config.max_stored_rooms, reserve_bytes=reserve)
    # Closed last, in this order: the storage, the shared rooms' tasks, the Valkey client.
    async with contextlib.AsyncExitStack() as stack:
        store: MemoryStorage | SqliteStorage | ValkeyStorage
        if config.valkey:
            opened = open_valkey(config.valkey, quota, retention(config))
            store = await stack.enter_async_context(opened)
        elif config.ephemeral:
            store = MemoryStorage(quota)
        else:
            store = SqliteStorage(config.data_dir, quota)
        storage: Storage = store
        settings = RoomSettings(
            history_cap=config.history, max_participants=config.max_participants
        )
        make_room: RoomMaker | None = None  # rooms of this process alone
        if isinstance(store, ValkeyStorage):
            rooms = shared_rooms(store.client, settings, quota, retention(config))
            make_room = await stack.enter_async_context(rooms)
        stack.callback(storage.close)
        async with trio.open_nursery() as nursery:
            budget = CreationBudget(
                BudgetSettings(
                    rooms_per_minute=config.new_rooms_per_minute,
                    burst=config.new_rooms_burst,
                    source_rooms_per_minute=config.source_new_rooms_per_minute,
                    source_burst=config.source_new_rooms_burst,
                ),
                trio.current_time(),
            )
            registry = Registry(storage, settings, config.max_rooms, nursery, budget, make_room)
            app = SecurityHeaders(create_app(config, registry, readiness=store))
            if config.metrics_address:
                readings = Readings(registry, gauge, quota, config.max_rooms)
                await nursery.start(serve_metrics, config.metrics_address, readings)
            stop_http = trio.Event()
            http_done = trio.Event()
            hc = hypercorn_config(config, gauge)
            if hc.pinger is not None:
                nursery.start_soon(hc.pinger.run)

            async def run_http(*, task_status: trio.TaskStatus[list[str]]) -> None:
                try:
                    await hypercorn.trio.serve(
                        app,
                        hc,
                        shutdown_trigger=stop_http.wait,
                        task_status=task_status,
                    )
                finally:
                    http_done.set()

            nursery.start_soon(registry.run_sweeper, retention(config))
            urls: list[str] = await nursery.start(run_http)
            task_status.started(urls[0])
            await shutdown.wait()
            logger.info("shutting down")
            with trio.move_on_after(SHUTDOWN_CLOSE_SECONDS):
                await registry.shutdown()
            stop_http.set()
            await http_done.wait()
            nursery.cancel_scope.cancel()
