"""The attack benchmark: what an attacker's traffic costs securechat at its default settings.

Usage: ``python -m bench attack [--quick] [--only NAME ...] [--fuzz-seconds S] [--json PATH]``

Each attack starts its own ``securechat serve`` (defaults, 127.0.0.1, a child
process killed by PID at the end) and prints one line of figures and whether
its target is met. The attacker is one anonymous client on 127.0.0.1; the
legitimate clients it is measured against connect from 127.0.0.2, so a
defence that counts sources can tell them apart. Every refusal the attacker
meets is counted by how it came (``close 1013``, ``http 503``, ``timeout``...),
and a proof-of-work challenge is solved while the attack's budget lasts.
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
from bench.servers import raise_open_files_limit
from bench.siege import (
    Attacker,
    AttackServer,
    LogCheck,
    Refused,
    Solver,
    close_all,
    join,
    join_all,
    message_frame,
    refusals,
    serving,
)

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
FLOOD_AT_LIMIT_S: Final = 1.0  # held at the limit before the legitimate client comes
FLOOD_RETRY_S: Final = 0.1  # a refused flood socket's pause: holds the flood without a spin
LEGIT_SOURCE: Final = "127.0.0.2"  # another loopback address: not the attacker's source

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
    flood_open_files: int = 1024  # the server's soft RLIMIT_NOFILE
    flood_sockets: int = 1050
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
            flood_open_files=256, flood_sockets=282, log_frames=10, crash_threads=2,
            crash_rounds=3, fuzz_seconds=2.0, fuzz_threads=2, rss_settle_s=0.2, close_settle_s=1.0,
            flood_settle_s=5.0, legit_timeout_s=3.0, solve_budget_s=2.0,
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


async def _from_legit_source(url: WSParsedURL) -> socket.socket:
    """A socket to the server from LEGIT_SOURCE, for picows's ``socket_factory``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.bind((LEGIT_SOURCE, 0))
        await asyncio.get_running_loop().sock_connect(sock, (url.host, url.port))
    except BaseException:
        sock.close()
        raise
    return sock


async def _timed_join(
    server: AttackServer, room: str, client: str, attacker: Attacker, timeout_s: float
) -> tuple[bool, float]:
    """Join as a legitimate client (from LEGIT_SOURCE); whether it worked and how long it took."""
    started = time.perf_counter()
    ok = await join(
        server.base_url, room, client, attacker, timeout_s, socket_factory=_from_legit_source
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
    rooms_made = stored = 0
    rooms: list[str] = []
    async with serving() as server:
        before = server.data_bytes()
        started = time.monotonic()
        deadline = started + sizes.disk_seconds

        async def fill_rooms() -> None:
            nonlocal rooms_made, stored
            while time.monotonic() < deadline:
                attacker, room = Attacker(hostile.token(), tally, solver), hostile.room_id()
                rooms.append(room)
                if await join(
                    server.base_url, room, hostile.client_id(), attacker, CONNECT_TIMEOUT_S
                ):
                    rooms_made += 1
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
        f"{rate / MB:,.1f} MB/s; {rooms_made:,} rooms created, {stored:,} messages stored; "
        f"refused: {refusals(tally)}{_solver_note(solver)}"
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
    async with serving() as server:
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
    async with serving() as server:
        server.ensure_open_files(count + OPEN_FILES_MARGIN)
        await asyncio.sleep(sizes.rss_settle_s)
        idle_baseline = server.rss_bytes()
        idlers = [(room, Attacker(hostile.token(), tally, solver)) for room in rooms[count:]]
        idle = await join_all(server.base_url, idlers, CONNECT_CONCURRENCY, CONNECT_TIMEOUT_S)
        await asyncio.sleep(sizes.rss_settle_s)
        idle_rss = server.rss_bytes() - idle_baseline
        close_all(attacker for _, attacker in idlers)
        idle_log = LogCheck.of(server, rooms)
    per_room = held_rss / max(full, 1)
    per_idle = idle_rss / max(idle, 1)
    line = (
        f"{full:,}/{count:,} full rooms held ({MESSAGES_PER_ROOM} x 32 KiB): +{held_rss / MB:,.1f}"
        f" MB RSS = {per_room / 1000:,.1f} kB per room; after they closed: "
        f"+{after_rss / MB:,.1f} MB; {idle:,}/{count:,} idle sockets (hello, own empty room): "
        f"{per_idle / 1000:,.1f} kB each; refused: {refusals(tally)}{_solver_note(solver)}"
    )
    return Result(
        "memory",
        line,
        "1,000 held full rooms add at most 100 MB RSS",
        per_room <= MEMORY_TARGET_BYTES_PER_ROOM and full == count,
        {
            "full_rooms": full,
            "held_rss_bytes": held_rss,
            "rss_per_room_bytes": per_room,
            "rss_after_close_bytes": after_rss,
            "idle_sockets": idle,
            "rss_per_idle_socket_bytes": per_idle,
            "refusals": dict(tally),
            "server_open_files": server.limit_note,
            **_log_figures(log),
            "idle_log_room_id_lines": idle_log.room_id_lines,
        },
    )


# ----- 3. squat -----------------------------------------------------------------------


async def squat(sizes: Sizes) -> Result:
    """Hold every room the server allows, then see whether a member of an old room gets in."""
    tally: Counter[str] = Counter()
    setup: Counter[str] = Counter()
    solver, legit_solver = Solver(sizes.solve_budget_s), Solver(sizes.solve_budget_s)
    chat = [message_frame(CHAT_CIPHERTEXT_BYTES) for _ in range(3)]
    room, auth = hostile.room_id(), hostile.token()
    rooms = [hostile.room_id() for _ in range(sizes.squat_rooms)]
    async with serving(*sizes.squat_args) as server:
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
        member.close()
        close_all(attacker for _, attacker in squatters)
        log = LogCheck.of(server, [room, *rooms])
    outcome = f"rejoined and posted in {posted_s:.2f} s" if ok else _refused_how(legit, posted_s)
    lowered = f" (lowered to fit: {' '.join(sizes.squat_args)})" if sizes.squat_args else ""
    line = (
        f"{held:,}/{sizes.squat_rooms:,} random rooms held in {squat_s:.1f} s{lowered}; a member "
        f"of an existing room: {outcome}; server open files {server.limit_note}; "
        f"refused: {refusals(tally)}{_solver_note(solver)}"
    )
    return Result(
        "squat",
        line,
        "the member rejoins and posts within 2 s",
        ok and posted_s <= SQUAT_TARGET_S,
        {
            "held": held,
            "squat_seconds": squat_s,
            "member_ok": ok,
            "member_seconds": posted_s,
            "member_refusal": dict(legit),
            "refusals": dict(tally),
            "server_open_files": server.limit_note,
            "challenges_solved": solver.solved,
            **_log_figures(log),
        },
    )


# ----- 4. descriptors -----------------------------------------------------------------


@dataclass
class Flood:
    """Sockets that each keep one connection to the server open, reopening it when it ends."""

    tally: Counter[str]
    solver: Solver
    rooms: list[str] = field(default_factory=list)
    holding: list[Attacker | None] = field(default_factory=list)
    live: int = 0  # connections past `connected` right now
    joined: int = 0  # every connection that got that far

    def waiting(self) -> int:
        """Sockets opened and waiting for their handshake or `connected`."""
        pending = (attacker for attacker in self.holding if attacker is not None)
        return sum(1 for attacker in pending if not attacker.connected.done())

    async def hold(self, slot: int, base_url: str, timeout_s: float) -> None:
        """Keep slot ``slot`` connected until cancelled; after a refusal, wait and retry."""
        while True:
            attacker, room = Attacker(hostile.token(), self.tally, self.solver), hostile.room_id()
            self.rooms.append(room)
            self.holding[slot] = attacker
            if await join(base_url, room, hostile.client_id(), attacker, timeout_s):
                self.joined += 1
                self.live += 1
                try:
                    await attacker.gone
                finally:
                    self.live -= 1
                if attacker.close_code is not None:
                    self.tally[f"close {attacker.close_code} while held"] += 1
                else:
                    self.tally["dropped while held"] += 1
            else:
                await asyncio.sleep(FLOOD_RETRY_S)


async def descriptors(sizes: Sizes) -> Result:
    """More sockets than the server has descriptors, then one legitimate client."""
    flood = Flood(Counter(), Solver(sizes.solve_budget_s))
    flood.holding = [None] * sizes.flood_sockets
    async with serving(open_files_soft=sizes.flood_open_files) as server:
        soft = server.open_files_soft()
        since = server.log_bytes()
        # No gate: every socket is opened at once and kept while its handshake waits.
        hold_s = sizes.flood_settle_s + sizes.legit_timeout_s + ECHO_TIMEOUT_S
        slots = [
            asyncio.create_task(flood.hold(slot, server.base_url, hold_s))
            for slot in range(sizes.flood_sockets)
        ]
        # The flood is in place once the server is out of descriptors (or has
        # every socket), and a moment after, so that its accept loop meets the limit.
        deadline = time.monotonic() + sizes.flood_settle_s
        while time.monotonic() < deadline and flood.live < sizes.flood_sockets:
            if server.open_fds() >= soft:
                await asyncio.sleep(FLOOD_AT_LIMIT_S)
                break
            await asyncio.sleep(FLOOD_POLL_S)
        held, waiting, fds = flood.live, flood.waiting(), server.open_fds()
        legit: Counter[str] = Counter()
        newcomer = Attacker(hostile.token(), legit, Solver(sizes.solve_budget_s))
        ok, legit_s = await _timed_join(
            server, hostile.room_id(), "legit01", newcomer, sizes.legit_timeout_s
        )
        newcomer.close()
        for task in slots:
            task.cancel()
        await asyncio.gather(*slots, return_exceptions=True)
        close_all(attacker for attacker in flood.holding if attacker is not None)
        await asyncio.sleep(LOG_FLUSH_S)
        log = LogCheck.of(server, flood.rooms, since)
    tally, solver = flood.tally, flood.solver
    outcome = f"connected in {legit_s:.2f} s" if ok else _refused_how(legit, legit_s)
    clear = ok or (bool(legit) and "timeout" not in legit)
    line = (
        f"{sizes.flood_sockets:,} sockets against a soft limit of {soft:,}: server at {fds:,} "
        f"descriptors, {held:,} sockets held, "
        f"{waiting:,} waiting, {flood.joined:,} joins; a legitimate client: {outcome}; server log: "
        f"{log.emfile_lines:,} EMFILE lines of {log.lines:,}; refused: {refusals(tally)}"
        f"{_solver_note(solver)}"
    )
    return Result(
        "descriptors",
        line,
        "no EMFILE logged; the client is in or refused within 1 s",
        log.emfile_lines == 0 and clear and legit_s <= FLOOD_TARGET_S,
        {
            "server_soft_limit": soft,
            "server_fds": fds,
            "held": held,
            "waiting": waiting,
            "joins": flood.joined,
            "legit_ok": ok,
            "legit_seconds": legit_s,
            "legit_refusal": dict(legit),
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
