"""Inputs that ended the server: the known one-connection crashes, and a fuzz looking for more.

Each input goes to a fresh ``securechat serve``; after it the server must still
be running and answer ``GET /healthz``. The raw bytes come from bench/hostile.py
and are sent from worker threads.
"""

import asyncio
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from bench import hostile
from bench.siege import AttackServer, serving

ALIVE_SETTLE_S: Final = 0.5  # after a crash input, before asking the server if it lives
PING_INTERVAL: Final = "0.05"  # seconds: pings often enough to race every close
MAX_FUZZ_DEATHS: Final = 10  # the fuzz restarts a dead server this often, then stops


async def _alive(server: AttackServer) -> bool:
    await asyncio.sleep(ALIVE_SETTLE_S)
    return server.alive() and await asyncio.to_thread(hostile.healthy, server.address)


def _repeat(send: Callable[[], None], rounds: int) -> None:
    """Run ``send`` ``rounds`` times; stop early once the server no longer takes connections."""
    for _ in range(rounds):
        try:
            send()
        except ConnectionRefusedError:
            return
        except OSError:
            continue  # reset or timed out: the server's answer to the frame


@dataclass
class Fuzz:
    """What a fuzz run tried, and the case kinds last sent by each thread before each death."""

    cases: Counter[str] = field(default_factory=Counter)
    deaths: list[list[str]] = field(default_factory=list)  # case kinds in flight at each
    seconds: float = 0.0


def _fuzz_worker(
    address: tuple[str, int],
    rng: random.Random,
    stop: threading.Event,
    deadline: float,
    recent: deque[str],
    cases: Counter[str],
) -> None:
    """Run random cases until ``stop`` or ``deadline``; the last kinds run stay in ``recent``."""
    while not stop.is_set() and time.monotonic() < deadline:
        case = hostile.fuzz_case(rng)
        recent.append(case.kind)
        cases[case.kind] += 1
        try:
            hostile.run_case(address, case)
        except ConnectionRefusedError:
            return
        except OSError:
            continue  # reset or timed out: the server's answer to the case


async def _stop_when_exited(process: Awaitable[int], stop: threading.Event) -> None:
    await process
    stop.set()


async def fuzz(seconds: float, threads: int, seed: int) -> Fuzz:
    """Malformed frames and requests from ``threads`` threads; a dead server is restarted.

    Each thread's generator is seeded from ``seed``, the restart count and the
    thread's index, so a seed names the cases that were tried.
    """
    fuzz = Fuzz()
    started = time.monotonic()
    deadline = started + seconds
    while time.monotonic() < deadline and len(fuzz.deaths) < MAX_FUZZ_DEATHS:
        async with serving("--ping-interval", PING_INTERVAL) as server:
            stop = threading.Event()
            recent: list[deque[str]] = [deque(maxlen=1) for _ in range(threads)]
            rngs = [random.Random(f"{seed}-{len(fuzz.deaths)}-{k}") for k in range(threads)]  # noqa: S311  (a fuzz, not a secret)
            watcher = asyncio.create_task(_stop_when_exited(server.process.wait(), stop))
            await asyncio.gather(
                *(
                    asyncio.to_thread(
                        _fuzz_worker, server.address, rng, stop, deadline, kinds, fuzz.cases
                    )
                    for rng, kinds in zip(rngs, recent, strict=True)
                )
            )
            stop.set()
            watcher.cancel()
            if not await _alive(server):
                fuzz.deaths.append(sorted({kind for kinds in recent for kind in kinds}))
    fuzz.seconds = time.monotonic() - started
    return fuzz


async def known_inputs(threads: int, rounds: int) -> dict[str, bool]:
    """Each known crash input against a fresh server: is it alive after it?

    The glued upgrade is one connection; each protocol violation is sent
    ``rounds`` times from each of ``threads`` threads, pings on.
    """
    alive: dict[str, bool] = {}
    async with serving() as server:
        await asyncio.to_thread(_repeat, lambda: hostile.send_glued_upgrade(server.address), 1)
        alive["upgrade + 1 byte"] = await _alive(server)
    for name, data in hostile.VIOLATIONS.items():
        async with serving("--ping-interval", PING_INTERVAL) as server:

            def violate(address: tuple[str, int] = server.address, data: bytes = data) -> None:
                hostile.send_violation(address, data)

            await asyncio.gather(
                *(asyncio.to_thread(_repeat, violate, rounds) for _ in range(threads))
            )
            alive[name] = await _alive(server)
    return alive
