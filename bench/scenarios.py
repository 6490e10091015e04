"""The scenarios, each a measured run against one server that is already listening.

Every run uses fresh room ids, connects its clients before the measured window
opens, and closes them after it: the window holds only the load itself.
"""

import asyncio
import itertools
import os
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from picows import WSError

from bench.load import (
    Member,
    Tally,
    close_all,
    connect,
    connect_all,
    send_paced,
    wait_drained,
    ws_url,
)
from bench.records import IdleRun, JoinRun, Latency, LoadRun, Usage
from bench.servers import Server, profiled

CONNECT_CONCURRENCY: Final = 64  # handshakes in flight while setting up; under the listen backlog
SETTLE_S: Final = 0.3  # after setup, for `joined` broadcasts to finish before the window
IDLE_SETTLE_S: Final = 1.0  # after connecting, before reading the server's RSS
IDLE_ROOM_SIZE: Final = 10  # idle clients sit in rooms of this many
OPEN_FILES_MARGIN: Final = 64  # descriptors the generator needs beside its clients

_run_ids = itertools.count()
_indices = itertools.count()


def _room_prefix(scenario: str) -> str:
    return f"{scenario}-{os.getpid()}-{next(_run_ids)}-"


def _generator_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Window:
    """A measured window: the server's and the generator's CPU, and the wall clock."""

    server: Server
    started: float = 0.0
    relay_cpu: float = 0.0
    valkey_cpu: float | None = None
    generator_cpu: float = 0.0

    def open(self) -> None:
        self.server.check_alive()
        self.started = time.perf_counter()
        self.relay_cpu = self.server.relay_cpu_seconds()
        self.valkey_cpu = self.server.valkey_cpu_seconds()
        self.generator_cpu = _generator_cpu_s()

    def close(self) -> Usage:
        """The window's figures; the server's CPU is its relays' plus its Valkey's."""
        self.server.check_alive()
        relay_cpu = self.server.relay_cpu_seconds() - self.relay_cpu
        valkey_now = self.server.valkey_cpu_seconds()
        valkey_cpu = (
            None if valkey_now is None or self.valkey_cpu is None else valkey_now - self.valkey_cpu
        )
        return Usage(
            window_s=time.perf_counter() - self.started,
            server_cpu_s=relay_cpu + (valkey_cpu or 0.0),
            server_rss_bytes=self.server.rss_bytes(),
            generator_cpu_s=_generator_cpu_s() - self.generator_cpu,
            valkey_cpu_s=valkey_cpu,
            valkey_rss_bytes=self.server.valkey_rss_bytes(),
        )


async def _open_rooms(server: Server, prefix: str, rooms: int, members: int) -> list[Member]:
    """Connect ``rooms`` x ``members`` clients to rooms ``<prefix><n>``.

    The list is member-major (first member of every room, then the second...),
    so paced sends from it interleave the rooms.
    """
    tally = Tally()
    plan = [
        (f"{prefix}{room}", Member(members, next(_indices), tally))
        for _ in range(members)
        for room in range(rooms)
    ]
    failures = await connect_all(server.url_for, plan, CONNECT_CONCURRENCY)
    if failures:
        await close_all(member for _, member in plan)
        server.check_alive()
        raise RuntimeError(
            f"{len(failures)} of {len(plan)} clients failed to join {server.target.name}: "
            f"{failures[0]!r}"
        )
    await asyncio.sleep(SETTLE_S)
    return [member for _, member in plan]


async def load_run(
    server: Server,
    scenario: str,
    *,
    rooms: int,
    members: int,
    rate_per_member: float,
    duration_s: float,
    drain_s: float,
    profile: Path | None = None,
) -> LoadRun:
    """Every member sends ``rate_per_member`` messages/s for ``duration_s``, open loop.

    With ``profile``, py-spy samples the server during the window into that SVG.
    """
    clients = await _open_rooms(server, _room_prefix(scenario), rooms, members)
    tally = clients[0].tally
    try:
        tally.recording = True
        window = Window(server)
        async with profiled(server, profile, duration_s):
            window.open()
            await send_paced(clients, rate_per_member, duration_s)
            await wait_drained(tally, drain_s)
            usage = window.close()
        tally.recording = False
    finally:
        await close_all(clients)
    return LoadRun(
        scenario, server.target.name, rooms, members, rate_per_member, tally.sent,
        tally.expected, tally.delivered, tally.errors, tally.dropped,
        dict(tally.close_codes), Latency.of(tally.latencies_ns), usage,
    )  # fmt: skip


async def ping_pong(server: Server, *, duration_s: float, drain_s: float) -> LoadRun:
    """Two members, one message in flight: each answers the other's as it arrives."""
    clients = await _open_rooms(server, _room_prefix("ping-pong"), 1, 2)
    tally = clients[0].tally
    playing = True

    def answer_from(member: Member) -> None:
        def on_delivery(sender: int) -> None:
            if playing and sender != member.index:
                member.send_message()

        member.on_delivery = on_delivery

    for member in clients:
        answer_from(member)
    try:
        tally.recording = True
        window = Window(server)
        window.open()
        clients[0].send_message()
        await asyncio.sleep(duration_s)
        playing = False
        await wait_drained(tally, drain_s)
        usage = window.close()
        tally.recording = False
    finally:
        await close_all(clients)
    return LoadRun(
        "ping-pong", server.target.name, 1, 2, 0.0, tally.sent, tally.expected,
        tally.delivered, tally.errors, tally.dropped, dict(tally.close_codes),
        Latency.of(tally.latencies_ns), usage,
    )  # fmt: skip


async def idle_connections(server: Server, counts: Sequence[int]) -> list[IdleRun]:
    """Hold ``counts[0]``, then ``counts[1]``... connections after hello; RSS at each.

    The RSS per connection is the growth over the server's RSS before the first
    connection, divided by the connections held: the relay processes' RSS; a
    Valkey target's redis-server is measured beside it, apart. A count the open-files limit
    cannot reach is reported with that reason rather than attempted.
    """
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    baseline = server.rss_bytes()
    valkey_baseline = server.valkey_rss_bytes()
    tally = Tally()
    prefix = _room_prefix("idle")
    held: list[Member] = []
    runs: list[IdleRun] = []
    try:
        for wanted in counts:
            failure = None
            started = time.perf_counter()
            if wanted + OPEN_FILES_MARGIN > limit:
                failure = f"open-files limit {limit} is below {wanted} connections"
            else:
                plan = [
                    (
                        f"{prefix}{n // IDLE_ROOM_SIZE}",
                        Member(IDLE_ROOM_SIZE, next(_indices), tally),
                    )
                    for n in range(len(held), wanted)
                ]
                failures = await connect_all(server.url_for, plan, CONNECT_CONCURRENCY)
                held += [member for _, member in plan if member.transport is not None]
                if failures:
                    failure = f"{len(failures)} connections failed: {failures[0]!r}"
            connect_s = time.perf_counter() - started
            await asyncio.sleep(IDLE_SETTLE_S)
            live = sum(
                1
                for member in held
                if member.transport is not None and not member.transport.is_disconnected
            )
            runs.append(
                IdleRun(
                    server.target.name,
                    wanted,
                    live,
                    baseline,
                    server.rss_bytes(),
                    connect_s,
                    failure,
                    valkey_baseline,
                    server.valkey_rss_bytes(),
                )
            )
            if failure is not None:
                break
    finally:
        await close_all(held)
    return runs


async def join_storm(
    server: Server, *, rate_per_s: float, duration_s: float, rooms: int, history: int
) -> JoinRun:
    """Clients join seeded rooms at a fixed rate; time from connect to `connected`.

    Each room first gets ``history`` messages from a member who stays, so every
    join is handed a full history; each joiner leaves once it is connected.
    """
    prefix = _room_prefix("join")
    seeders = await _open_rooms(server, prefix, rooms, 1)
    seed_tally = seeders[0].tally
    seed_tally.recording = True
    for member in seeders:
        for _ in range(history):
            member.send_message()
    await wait_drained(seed_tally, 30.0)
    seed_tally.recording = False
    tally = Tally()
    total = int(rate_per_s * duration_s)
    delays_ns: list[int] = []
    full = 0
    failures: list[BaseException] = []

    async def join(k: int) -> None:
        nonlocal full
        member = Member(0, next(_indices), tally)
        started = time.perf_counter_ns()
        try:
            room = f"{prefix}{k % rooms}"
            url = ws_url(server.url_for(room), room, f"j{member.index:07d}")
            connected = await connect(url, member)
        except (OSError, TimeoutError, WSError) as error:  # refused, closed, timed out
            failures.append(error)
            return
        finally:
            member.close()
        delays_ns.append(connected - started)
        full += member.history_length == history

    try:
        window = Window(server)
        window.open()
        start = time.perf_counter()
        tasks = []
        for k in range(total):
            await asyncio.sleep(max(0.0, start + k / rate_per_s - time.perf_counter()))
            tasks.append(asyncio.create_task(join(k)))
        await asyncio.gather(*tasks)
        usage = window.close()
    finally:
        await close_all(seeders)
    return JoinRun(
        server.target.name, rate_per_s, total, len(delays_ns), full, Latency.of(delays_ns),
        usage, repr(failures[0]) if failures else None,
    )  # fmt: skip
