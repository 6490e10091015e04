"""The attack benchmark: what an attacker's traffic costs securechat at its default settings.

Usage: ``python -m bench attack [--quick] [--only NAME ...] [--fuzz-seconds S] [--json PATH]``

Each attack starts its own ``securechat serve`` (defaults, 127.0.0.1, a child
process killed by PID at the end) and prints one line of figures and whether
its target is met. The attacker is one anonymous client on 127.0.0.1; the
legitimate clients it is measured against connect from 127.0.0.2, so a
defence that counts sources can tell them apart. Every refusal the attacker
meets is counted by how it came (``close 1013``, ``http 503``, ``timeout``...),
and a proof-of-work challenge is solved while the attack's budget lasts.

Where a defence would stop the attacker before the thing measured, the attack
lifts it and its line says so: memory and squat run without the new-room budget
and the per-source cap (``LIFTED``), to measure what held rooms cost and whether
a member gets back in when every slot is taken. The descriptor flood runs
against a server whose hard open-files limit is 1,024, from 38 sources, and
solves no proof of work (bench/flood.py).
"""

import argparse
import asyncio
import dataclasses
import json
import socket
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from picows import WSParsedURL

from bench import crashes, hostile
from bench.flood import FLOOD_SOURCES, Flood, listen_overflows, watch
from bench.servers import raise_open_files_limit
from bench.siege import (
    Attacker,
    AttackServer,
    LogCheck,
    Refused,
    Solver,
    close_all,
    from_source,
    join,
    join_all,
    message_frame,
    refusals,
    serving,
)
from securechat.capacity import derived_max_connections
from securechat.limits import DEFAULT_MAX_PARTICIPANTS

ATTACKS: Final = ("disk", "memory", "squat", "descriptors", "log", "crash")
MB: Final = 1_000_000  # decimal, as the targets are stated
MAX_CIPHERTEXT_BYTES: Final = 32 * 1024  # the server's default limit, decoded
CHAT_CIPHERTEXT_BYTES: Final = 100  # a short line, encrypted: the legitimate client's
MESSAGES_PER_ROOM: Final = 10  # the default history cap: every one of them is kept
CONNECT_CONCURRENCY: Final = 64  # handshakes in flight while setting up; under the backlog
CONNECT_TIMEOUT_S: Final = 10.0  # an attacker's connect plus hello, before it counts a timeout
ECHO_TIMEOUT_S: Final = 10.0  # for a room's messages to come back (committed)
ROOM_IDLE_S: Final = 6.0  # for a room nobody is in to stop: the server's 5 s grace, and some
OPEN_FILES_MARGIN: Final = 64  # the server's own descriptors beside its sockets
ANSWER_TIMEOUT_S: Final = 2.0  # for the server's answer to a bad frame
LOG_FLUSH_S: Final = 0.5  # for the server to write what it logs about the last frames
FLOOD_POLL_S: Final = 0.25  # how often the flood checks the server's descriptor count
FLOOD_AT_LIMIT_S: Final = 1.0  # held at the limit, and measured, before the legitimate clients
LEGIT_ATTEMPTS: Final = 3  # legitimate newcomers during the flood, one after another
LEGIT_PAUSE_S: Final = 0.2  # between them
CLEAR_REFUSALS: Final = ("http 503", "close 1013")  # refusals that tell a client to come back
LEGIT_SOURCE: Final = "127.0.0.2"  # another loopback address: not the attacker's source
# For memory and squat: no new-room budget and no per-source cap, so that one
# client can hold what an attacker that paid its way in slowly, or came from many
# addresses, would hold.
LIFTED: Final = (
    "--new-rooms-burst", "10000000", "--source-new-rooms-burst", "10000000",
    "--max-connections-per-source", "0",
)  # fmt: skip

DISK_TARGET_BYTES_PER_S: Final = 64 * MB / 10  # 64 MB in 10 s from one anonymous client
MEMORY_TARGET_BYTES_PER_ROOM: Final = 100 * MB / 1000  # 100 MB for 1,000 held full rooms
SQUAT_TARGET_S: Final = 2.0  # a member's rejoin and post during the squat
FLOOD_TARGET_S: Final = 1.0  # connected, or refused with a clear code, in this time


@dataclass(frozen=True, slots=True)
class Sizes:
    """How big each attack is: the defaults are the full run's."""

    disk_seconds: float = 10.0
    disk_sockets: int = 16
    memory_rooms: int = 1000
    squat_rooms: int = 10_000  # the server's default --max-rooms
    squat_args: tuple[str, ...] = ()  # limits lowered to fit a smaller squat
    flood_open_files: int = 1024  # the server's RLIMIT_NOFILE, soft and hard
    flood_sockets: int = 600  # WebSockets, 50 to a shared room
    flood_partial: int = 600  # partial requests: with the WebSockets, more than the limit
    log_frames: int = 200
    crash_threads: int = 4
    crash_rounds: int = 25  # connections per thread for each protocol violation
    fuzz_seconds: float = 60.0
    fuzz_threads: int = 4
    rss_settle_s: float = 1.0  # after connecting, before reading the server's RSS
    close_settle_s: float = 6.0  # after the attacker closes: the server's 5 s room grace, and some
    flood_settle_s: float = 30.0  # at most, for the descriptor flood to reach the server's limit
    legit_timeout_s: float = 5.0  # the legitimate client's patience, well past every target
    solve_budget_s: float = 20.0  # attacker CPU seconds for proofs of work, per attack

    @classmethod
    def quick(cls) -> "Sizes":
        """Small enough for a check that the benchmark works, in well under a minute."""
        return cls(
            disk_seconds=1.0, memory_rooms=30, squat_rooms=200, squat_args=("--max-rooms", "200"),
            flood_open_files=256, flood_sockets=150, flood_partial=150, log_frames=10,
            crash_threads=2, crash_rounds=3, fuzz_seconds=2.0, fuzz_threads=2, rss_settle_s=0.2,
            close_settle_s=1.0, flood_settle_s=5.0, legit_timeout_s=3.0, solve_budget_s=2.0,
        )  # fmt: skip


@dataclass
class Result:
    """One attack's line: its figures, its target and whether the run met it."""

    name: str
    line: str
    target: str
    met: bool
    figures: dict[str, Any] = field(default_factory=dict)


class Progress:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {text}", file=sys.stderr, flush=True)


async def _timed_join(
    server: AttackServer, room: str, client: str, attacker: Attacker, timeout_s: float
) -> tuple[bool, float]:
    """Join as a legitimate client (from LEGIT_SOURCE); whether it worked and how long it took."""
    started = time.perf_counter()
    ok = await join(
        server.base_url, room, client, attacker, timeout_s, socket_factory=from_source(LEGIT_SOURCE)
    )
    return ok, time.perf_counter() - started


async def _post(attacker: Attacker, frames: Sequence[bytes], echoes: int | None = None) -> int:
    """Send ``frames`` and wait for ``echoes`` (default: one per frame); how many came."""
    before = attacker.echoes
    attacker.expect(len(frames) if echoes is None else echoes)
    for data in frames:
        attacker.send(data)
    try:
        async with asyncio.timeout(ECHO_TIMEOUT_S):
            await attacker.echoed
    except Refused as refused:
        attacker.tally[f"{refused.reason} after hello"] += 1
    except TimeoutError:
        attacker.tally["no echo in time"] += 1
    return attacker.echoes - before


def _refused_how(tally: Counter[str], elapsed_s: float) -> str:
    reason = next(iter(tally), "?")
    if reason == "timeout":
        return f"timed out after {elapsed_s:.1f} s"
    return f"refused ({reason}) after {elapsed_s:.2f} s"


def _log_figures(log: LogCheck) -> dict[str, Any]:
    return {
        "log_bytes": log.bytes,
        "log_lines": log.lines,
        "log_room_id_lines": log.room_id_lines,
        "log_address_lines": log.address_lines,
    }


def _solver_note(solver: Solver) -> str:
    if not solver.solved and not solver.gave_up:
        return ""
    return f"; challenges solved {solver.solved:,}, given up {solver.gave_up:,}"


# ----- 1. disk ------------------------------------------------------------------------


async def disk(sizes: Sizes) -> Result:
    """Sockets each filling new random rooms with maximal ciphertexts, for a fixed time."""
    tally: Counter[str] = Counter()
    solver = Solver(sizes.solve_budget_s)
    frames = [message_frame(MAX_CIPHERTEXT_BYTES) for _ in range(MESSAGES_PER_ROOM)]
    rooms_made = stored = paid = 0
    rooms: list[str] = []
    async with serving() as server:
        before = server.data_bytes()
        started = time.monotonic()
        deadline = started + sizes.disk_seconds

        async def fill_rooms() -> None:
            nonlocal rooms_made, stored, paid
            while time.monotonic() < deadline:
                attacker, room = Attacker(hostile.token(), tally, solver), hostile.room_id()
                rooms.append(room)
                if await join(
                    server.base_url, room, hostile.client_id(), attacker, CONNECT_TIMEOUT_S
                ):
                    rooms_made += 1
                    paid += attacker.proofs > 0
                    echoed = await _post(attacker, frames)  # not `+= await`: that reads first
                    stored += echoed
                attacker.close()

        await asyncio.gather(*(fill_rooms() for _ in range(sizes.disk_sockets)))
        elapsed = time.monotonic() - started
        grown = server.data_bytes() - before
        log = LogCheck.of(server, rooms)
    rate = grown / elapsed
    line = (
        f"{sizes.disk_sockets} sockets for {elapsed:.1f} s: data dir +{grown / MB:,.1f} MB = "
        f"{rate / MB:,.1f} MB/s; {rooms_made:,} rooms created ({rooms_made - paid:,} free, "
        f"{paid:,} paid for with a proof of work), {solver.gave_up:,} given up at a challenge; "
        f"{stored:,} messages stored; refused: {refusals(tally)}{_solver_note(solver)}"
    )
    return Result(
        "disk",
        line,
        "at most 64 MB in 10 s (6.4 MB/s)",
        rate <= DISK_TARGET_BYTES_PER_S,
        {
            "seconds": elapsed,
            "data_dir_bytes": grown,
            "bytes_per_s": rate,
            "rooms_created": rooms_made,
            "rooms_free": rooms_made - paid,
            "rooms_paid": paid,
            "rooms_given_up": solver.gave_up,
            "messages_stored": stored,
            "refusals": dict(tally),
            "challenges_solved": solver.solved,
            **_log_figures(log),
        },
    )


# ----- 2. memory ----------------------------------------------------------------------


async def memory(sizes: Sizes) -> Result:
    """RSS per held full room, per idle socket in its own room, and after the sockets close."""
    tally: Counter[str] = Counter()
    solver = Solver(sizes.solve_budget_s)
    frames = [message_frame(MAX_CIPHERTEXT_BYTES) for _ in range(MESSAGES_PER_ROOM)]
    count = sizes.memory_rooms
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def fill(room: str, attacker: Attacker, server: AttackServer) -> bool:
        async with gate:
            if not await join(
                server.base_url, room, hostile.client_id(), attacker, CONNECT_TIMEOUT_S
            ):
                return False
            return await _post(attacker, frames) == MESSAGES_PER_ROOM

    rooms = [hostile.room_id() for _ in range(2 * count)]
    async with serving(*LIFTED) as server:
        server.ensure_open_files(count + OPEN_FILES_MARGIN)
        await asyncio.sleep(sizes.rss_settle_s)
        baseline = server.rss_bytes()
        attackers = [Attacker(hostile.token(), tally, solver) for _ in range(count)]
        full = sum(
            await asyncio.gather(
                *(fill(r, a, server) for r, a in zip(rooms, attackers, strict=False))
            )
        )
        await asyncio.sleep(sizes.rss_settle_s)
        held_rss = server.rss_bytes() - baseline
        close_all(attackers)
        await asyncio.sleep(sizes.close_settle_s)
        after_rss = server.rss_bytes() - baseline
        log = LogCheck.of(server, rooms)
    async with serving(*LIFTED) as server:
        server.ensure_open_files(count + OPEN_FILES_MARGIN)
        await asyncio.sleep(sizes.rss_settle_s)
        idle_baseline = server.rss_bytes()
        idlers = [(room, Attacker(hostile.token(), tally, solver)) for room in rooms[count:]]
        idle = await join_all(server.base_url, idlers, CONNECT_CONCURRENCY, CONNECT_TIMEOUT_S)
        await asyncio.sleep(sizes.rss_settle_s)
        idle_rss = server.rss_bytes() - idle_baseline
        close_all(attacker for _, attacker in idlers)
        await asyncio.sleep(sizes.close_settle_s)
        idle_after_rss = server.rss_bytes() - idle_baseline
        idle_log = LogCheck.of(server, rooms)
    per_room = held_rss / max(full, 1)
    per_idle = idle_rss / max(idle, 1)
    line = (
        f"budget and per-source cap lifted to measure memory per room; {full:,}/{count:,} full "
        f"rooms held ({MESSAGES_PER_ROOM} x 32 KiB): +{held_rss / MB:,.1f}"
        f" MB RSS = {per_room / 1000:,.1f} kB per room; after they closed: "
        f"+{after_rss / MB:,.1f} MB; {idle:,}/{count:,} idle sockets (hello, own empty room): "
        f"{per_idle / 1000:,.1f} kB each, after they closed: +{idle_after_rss / MB:,.1f} MB; "
        f"refused: {refusals(tally)}{_solver_note(solver)}"
    )
    return Result(
        "memory",
        line,
        "1,000 held full rooms add at most 100 MB RSS",
        per_room <= MEMORY_TARGET_BYTES_PER_ROOM and full == count,
        {
            "lifted": list(LIFTED),
            "full_rooms": full,
            "held_rss_bytes": held_rss,
            "rss_per_room_bytes": per_room,
            "rss_after_close_bytes": after_rss,
            "idle_sockets": idle,
            "rss_per_idle_socket_bytes": per_idle,
            "idle_rss_after_close_bytes": idle_after_rss,
            "refusals": dict(tally),
            "server_open_files": server.limit_note,
            **_log_figures(log),
            "idle_log_room_id_lines": idle_log.room_id_lines,
        },
    )


# ----- 3. squat -----------------------------------------------------------------------


async def squat(sizes: Sizes) -> Result:
    """Hold every room the server allows, then see whether a member of an old room gets in.

    The budget and the per-source cap are lifted: an attacker that paid its way
    in slowly, or came from many addresses, holds as many rooms as this one.
    """
    tally: Counter[str] = Counter()
    setup: Counter[str] = Counter()
    solver, legit_solver = Solver(sizes.solve_budget_s), Solver(sizes.solve_budget_s)
    chat = [message_frame(CHAT_CIPHERTEXT_BYTES) for _ in range(3)]
    room, auth = hostile.room_id(), hostile.token()
    rooms = [hostile.room_id() for _ in range(sizes.squat_rooms)]
    async with serving(*LIFTED, *sizes.squat_args) as server:
        server.ensure_open_files(sizes.squat_rooms + OPEN_FILES_MARGIN)
        alice, bob = Attacker(auth, setup, legit_solver), Attacker(auth, setup, legit_solver)
        if not (await _timed_join(server, room, "alice01", alice, sizes.legit_timeout_s))[0]:
            raise RuntimeError(f"could not make the existing room: {refusals(setup)}")
        await _post(alice, chat)
        if not (await _timed_join(server, room, "bob0002", bob, sizes.legit_timeout_s))[0]:
            raise RuntimeError(f"could not make the existing room: {refusals(setup)}")
        await _post(bob, chat[:2])
        close_all((alice, bob))
        # The old room must have stopped before the squat, or it holds a place the
        # squat cannot take and that its member gets back.
        await asyncio.sleep(ROOM_IDLE_S)
        squatters = [(r, Attacker(hostile.token(), tally, solver)) for r in rooms]
        started = time.monotonic()
        held = await join_all(server.base_url, squatters, CONNECT_CONCURRENCY, CONNECT_TIMEOUT_S)
        squat_s = time.monotonic() - started
        legit: Counter[str] = Counter()
        member = Attacker(auth, legit, legit_solver)
        ok, join_s = await _timed_join(server, room, "alice01", member, sizes.legit_timeout_s)
        posted_s = join_s
        if ok:
            started_post = time.perf_counter()
            ok = await _post(member, chat[:1]) == 1
            posted_s += time.perf_counter() - started_post
        newcomer_tally: Counter[str] = Counter()
        newcomer = Attacker(hostile.token(), newcomer_tally, legit_solver)
        new_ok, new_s = await _timed_join(
            server, hostile.room_id(), "carol03", newcomer, sizes.legit_timeout_s
        )
        newcomer.close()
        member.close()
        await asyncio.sleep(0)  # a close frame that came with the last answers
        evicted = Counter(
            attacker.close_code for _, attacker in squatters if attacker.close_code is not None
        )
        close_all(attacker for _, attacker in squatters)
        log = LogCheck.of(server, [room, *rooms])
    outcome = f"rejoined and posted in {posted_s:.2f} s" if ok else _refused_how(legit, posted_s)
    fresh = f"connected in {new_s:.2f} s" if new_ok else _refused_how(newcomer_tally, new_s)
    lowered = f" (lowered to fit: {' '.join(sizes.squat_args)})" if sizes.squat_args else ""
    closed = ", ".join(f"{code}: {n:,}" for code, n in evicted.most_common()) or "none"
    line = (
        f"budget and per-source cap lifted to hold every room; {held:,}/{sizes.squat_rooms:,} "
        f"random rooms held, one socket each, in {squat_s:.1f} s, --max-rooms {sizes.squat_rooms:,}"
        f"{lowered}; a member of an existing room (2 clientIds, 5 messages): {outcome}; "
        f"squatters closed meanwhile: {closed}; a brand-new room: {fresh}; server open files "
        f"{server.limit_note}; refused: {refusals(tally)}{_solver_note(solver)}"
    )
    return Result(
        "squat",
        line,
        "the member rejoins and posts within 2 s",
        ok and posted_s <= SQUAT_TARGET_S,
        {
            "lifted": list(LIFTED),
            "held": held,
            "squat_seconds": squat_s,
            "member_ok": ok,
            "member_seconds": posted_s,
            "member_refusal": dict(legit),
            "squatters_closed": {str(code): n for code, n in evicted.items()},
            "new_room_ok": new_ok,
            "new_room_seconds": new_s,
            "new_room_refusal": dict(newcomer_tally),
            "refusals": dict(tally),
            "server_open_files": server.limit_note,
            "challenges_solved": solver.solved,
            **_log_figures(log),
        },
    )


# ----- 4. descriptors -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attempt:
    """One legitimate client's try during the flood: how it ended and how long it took."""

    ok: bool
    seconds: float
    tcp_seconds: float | None  # its TCP connect alone, if it got that far
    refusal: dict[str, int]

    @property
    def clear(self) -> bool:
        """In, or refused with a code that says why: a 503 or a 1013."""
        return self.ok or any(reason in CLEAR_REFUSALS for reason in self.refusal)

    def describe(self) -> str:
        how = (
            f"connected in {self.seconds:.2f} s"
            if self.ok
            else _refused_how(Counter(self.refusal), self.seconds)
        )
        tcp = "" if self.tcp_seconds is None else f" (TCP connect {self.tcp_seconds:.2f} s)"
        return how + tcp


async def _timed_attempt(server: AttackServer, client: str, timeout_s: float) -> Attempt:
    """A legitimate newcomer from LEGIT_SOURCE opens a new room; its TCP connect timed apart."""
    tally: Counter[str] = Counter()
    attacker = Attacker(hostile.token(), tally, Solver(timeout_s))
    connect = from_source(LEGIT_SOURCE)
    tcp: list[float] = []

    async def timed_connect(url: WSParsedURL) -> socket.socket:
        started = time.perf_counter()
        sock = await connect(url)
        tcp.append(time.perf_counter() - started)
        return sock

    started = time.perf_counter()
    ok = await join(
        server.base_url, hostile.room_id(), client, attacker, timeout_s,
        socket_factory=timed_connect,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    attacker.close()
    return Attempt(ok, elapsed, tcp[0] if tcp else None, dict(tally))


async def descriptors(sizes: Sizes) -> Result:
    """More connections than the server has descriptors, from many sources; then newcomers."""
    tally: Counter[str] = Counter()
    flood = Flood(tally, DEFAULT_MAX_PARTICIPANTS)
    total = sizes.flood_sockets + sizes.flood_partial
    limit = sizes.flood_open_files
    async with serving(open_files_hard=limit) as server:
        soft, hard = server.open_files()
        cap = derived_max_connections(hard)
        since, overflows = server.log_bytes(), listen_overflows()
        hold_s = sizes.flood_settle_s + sizes.legit_timeout_s + ECHO_TIMEOUT_S
        # No gate: every holder opens at once, and reopens a moment after it is refused.
        holders = [
            asyncio.create_task(flood.hold_socket(slot, server.base_url, hold_s))
            for slot in range(sizes.flood_sockets)
        ] + [
            asyncio.create_task(flood.hold_partial(slot, server.address))
            for slot in range(sizes.flood_partial)
        ]
        # In place once the server holds as many connections as its cap allows (or
        # every holder is in), and a moment after, measured, so that it is steady.
        deadline = time.monotonic() + sizes.flood_settle_s
        while time.monotonic() < deadline and flood.sockets + flood.partial < total:
            if server.open_fds() >= cap:
                break
            await asyncio.sleep(FLOOD_POLL_S)
        pressure = await watch(server, FLOOD_AT_LIMIT_S)
        held, partial, fds = flood.sockets, flood.partial, server.open_fds()
        attempts = []
        for number in range(LEGIT_ATTEMPTS):
            client = f"legit{number:02d}"
            attempts.append(await _timed_attempt(server, client, sizes.legit_timeout_s))
            await asyncio.sleep(LEGIT_PAUSE_S)
        for task in holders:
            task.cancel()
        await asyncio.gather(*holders, return_exceptions=True)
        flood.close()
        overflowed = listen_overflows() - overflows
        await asyncio.sleep(LOG_FLUSH_S)
        log = LogCheck.of(server, [room for room, _ in flood.rooms], since)
    slowest = max(attempt.seconds for attempt in attempts)
    clear = all(attempt.clear for attempt in attempts)
    line = (
        f"{total:,} connections ({sizes.flood_sockets:,} WebSockets in "
        f"{len(flood.rooms)} shared rooms, {sizes.flood_partial:,} partial requests; from "
        f"{len(FLOOD_SOURCES)} sources, no proof of work) against a hard limit of {hard:,} "
        f"(prlimit {limit}:{limit}; the server's cap {cap:,}): server at {fds:,} descriptors "
        f"(at most {pressure.fds_max:,}), {held:,} WebSockets held, {partial:,} partial open, "
        f"{flood.joins:,} joins, {flood.partial_opened:,} partial opened; {pressure.describe()}; "
        f"{LEGIT_ATTEMPTS} legitimate clients: {'; '.join(a.describe() for a in attempts)}; "
        f"listen overflows +{overflowed:,}; server log: {log.emfile_lines:,} EMFILE lines of "
        f"{log.lines:,}; refused: {refusals(tally)}"
    )
    return Result(
        "descriptors",
        line,
        "no EMFILE logged; the client is in or refused within 1 s",
        log.emfile_lines == 0 and clear and slowest <= FLOOD_TARGET_S,
        {
            "server_open_files": [soft, hard],
            "server_connection_cap": cap,
            "flood_websockets": sizes.flood_sockets,
            "flood_partial": sizes.flood_partial,
            "flood_rooms": len(flood.rooms),
            "server_fds": fds,
            "server_fds_max": pressure.fds_max,
            "held": held,
            "partial_open": partial,
            "joins": flood.joins,
            "partial_opened": flood.partial_opened,
            "server_cpu": pressure.server_cpu,
            "attacker_cpu": pressure.attacker_cpu,
            "accept_queue_max": pressure.accept_queue_max,
            "listen_overflows": overflowed,
            "legit": [dataclasses.asdict(attempt) for attempt in attempts],
            "legit_slowest_seconds": slowest,
            "emfile_lines": log.emfile_lines,
            "refusals": dict(tally),
            **_log_figures(log),
        },
    )


# ----- 5. log -------------------------------------------------------------------------


async def log_flood(sizes: Sizes) -> Result:
    """A deeply nested JSON frame before hello on many sockets: what the server logs."""
    tally: Counter[str] = Counter()
    solver = Solver(sizes.solve_budget_s)
    bad = b"[" * 1000 + b"]" * 1000
    rooms = [hostile.room_id() for _ in range(sizes.log_frames)]
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    sent = 0

    async def one(room: str) -> None:
        nonlocal sent
        async with gate:
            attacker = Attacker(hostile.token(), tally, solver, hello=False)
            if await join(
                server.base_url,
                room,
                hostile.client_id(),
                attacker,
                CONNECT_TIMEOUT_S,
                until="upgraded",
            ):
                attacker.send(bad)
                sent += 1
                try:
                    async with asyncio.timeout(ANSWER_TIMEOUT_S):
                        await attacker.answered
                except Refused as refused:
                    tally[refused.reason] += 1
                except TimeoutError:
                    tally["no answer"] += 1
                else:
                    await asyncio.sleep(0)  # a close frame right behind the answer
                    code = attacker.close_code
                    tally["error frame" if code is None else f"close {code}"] += 1
            attacker.close()

    async with serving() as server:
        since = server.log_bytes()
        await asyncio.gather(*(one(room) for room in rooms))
        await asyncio.sleep(LOG_FLUSH_S)
        log = LogCheck.of(server, rooms, since)
    per_frame = log.bytes / max(sent, 1)
    line = (
        f"{sent:,} frames of {len(bad):,} bytes before hello: {per_frame:,.0f} log bytes and "
        f"{log.lines / max(sent, 1):,.1f} lines per frame; {log.room_id_lines:,} log lines name a "
        f"room id, {log.address_lines:,} an address; answers: {refusals(tally)}"
    )
    return Result(
        "log",
        line,
        "no room id in any log line",
        log.room_id_lines == 0,
        {
            "frames": sent,
            "frame_bytes": len(bad),
            "log_bytes_per_frame": per_frame,
            "answers": dict(tally),
            **_log_figures(log),
        },
    )


# ----- 6. crash -----------------------------------------------------------------------


async def crash(sizes: Sizes, seed: int) -> Result:
    """The known one-connection crashes, then a fuzz: is the server alive after each?"""
    alive = await crashes.known_inputs(sizes.crash_threads, sizes.crash_rounds)
    fuzz = await crashes.fuzz(sizes.fuzz_seconds, sizes.fuzz_threads, seed)
    outcomes = ", ".join(f"{name}: {'alive' if ok else 'DEAD'}" for name, ok in alive.items())
    if fuzz.deaths:
        killers = Counter(kind for kinds in fuzz.deaths for kind in kinds)
        fuzzed = (
            f"DEAD {len(fuzz.deaths)}x (restarted; kinds in flight: "
            f"{', '.join(f'{k} x{n}' for k, n in killers.most_common())})"
        )
    else:
        fuzzed = "alive"
    line = (
        f"{outcomes} ({sizes.crash_threads} threads x {sizes.crash_rounds}, pings every "
        f"{crashes.PING_INTERVAL} s); fuzz, {sizes.fuzz_threads} threads, {fuzz.seconds:.0f} s, "
        f"{fuzz.cases.total():,} cases, seed {seed}: {fuzzed}"
    )
    return Result(
        "crash",
        line,
        "the server is alive after every input",
        all(alive.values()) and not fuzz.deaths,
        {
            "alive": alive,
            "fuzz_seconds": fuzz.seconds,
            "fuzz_cases": dict(fuzz.cases),
            "fuzz_deaths": fuzz.deaths,
            "seed": seed,
        },
    )


# ----- the command --------------------------------------------------------------------


async def run(chosen: Sequence[str], sizes: Sizes, seed: int, say: Progress) -> list[Result]:
    attacks: dict[str, Callable[[], Awaitable[Result]]] = {
        "disk": lambda: disk(sizes),
        "memory": lambda: memory(sizes),
        "squat": lambda: squat(sizes),
        "descriptors": lambda: descriptors(sizes),
        "log": lambda: log_flood(sizes),
        "crash": lambda: crash(sizes, seed),
    }
    results = []
    for name in chosen:
        say(f"{name}: starting")
        result = await attacks[name]()
        results.append(result)
        verdict = "met" if result.met else "MISSED"
        print(f"{name:12} {result.line} | target: {result.target}: {verdict}", flush=True)
    return results


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench attack", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the benchmark")
    parser.add_argument("--only", action="append", choices=ATTACKS, help="run only this attack")
    parser.add_argument("--fuzz-seconds", type=float, help="how long the fuzz runs (60; quick 2)")
    parser.add_argument(
        "--solve-budget",
        type=float,
        help="attacker CPU seconds for proofs of work, per attack (20; quick 2)",
    )
    parser.add_argument("--seed", type=int, help="the fuzz's seed (default: from the clock)")
    parser.add_argument("--json", type=argparse.FileType("w"), help="also write figures here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.fuzz_seconds is not None:
        sizes = dataclasses.replace(sizes, fuzz_seconds=args.fuzz_seconds)
    if args.solve_budget is not None:
        sizes = dataclasses.replace(sizes, solve_budget_s=args.solve_budget)
    seed = args.seed if args.seed is not None else time.time_ns() % 1_000_000
    chosen = [name for name in ATTACKS if not args.only or name in args.only]
    open_files = raise_open_files_limit()  # the attacker's own; each server starts at its default
    say = Progress()
    say(f"attacker open-files limit {open_files}; attacks: {', '.join(chosen)}")
    results = asyncio.run(run(chosen, sizes, seed, say))
    met = sum(result.met for result in results)
    print(f"targets met: {met} of {len(results)}")
    if args.json is not None:
        with args.json:
            json.dump([vars(result) for result in results], args.json, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
