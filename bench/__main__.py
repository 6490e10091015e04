"""Run the benchmark suite: every scenario against securechat, --ephemeral and two other relays.

Usage: ``python -m bench [--quick] [--duration S] [--scenario NAME ...]``;
``python -m bench attack --help`` for the attack benchmark (bench/attack.py).

Beside them securechat runs with its rooms in Valkey, one process (``valkey``)
and two (``valkey-2``), each with its own redis-server, where one is installed.
All the relays are started for a scenario, measured in turn (the order rotates
from one run to the next, so a slow moment on the shared machine does not always
hit the same one) and stopped after it. The report goes to stdout and to
``bench/results/<timestamp>.md`` and ``.json``; the p99-against-load plot of a
full run to ``docs/benchmarks-p99.png``.
"""

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

from bench import attack, report, scenarios
from bench.records import LoadRun, Results
from bench.servers import (
    DURABLE,
    PINGING,
    REPO_ROOT,
    TARGETS,
    VALKEY_TARGETS,
    Server,
    Target,
    enter_together,
    find_py_spy,
    raise_open_files_limit,
    running,
    valkey_available,
)

SCENARIOS: Final = ("ping-pong", "fan-out", "small-rooms", "idle", "join-storm")
REFERENCE_RATE: Final = 10.0  # messages/s per member in the 10 x 10 fan-out the targets name


@dataclass(frozen=True, slots=True)
class Settings:
    """Sizes of one invocation; --quick shrinks them to a check that the suite works."""

    duration_s: float
    fan_out_rates: tuple[float, ...]
    small_rooms: int
    small_rooms_rate: float
    idle_counts: tuple[int, ...]
    join_rate: float
    join_rooms: int
    drain_s: float

    @classmethod
    def full(cls, duration_s: float) -> "Settings":
        return cls(
            duration_s=duration_s,
            fan_out_rates=(2, 5, 7.5, 10, 15, 20, 30, 40, 60),
            small_rooms=1000,
            small_rooms_rate=1.0,
            idle_counts=(2000, 5000),
            join_rate=300.0,
            join_rooms=50,
            drain_s=3.0,
        )

    @classmethod
    def quick(cls, duration_s: float) -> "Settings":
        return cls(
            duration_s=duration_s,
            fan_out_rates=(5, 10),
            small_rooms=200,
            small_rooms_rate=1.0,
            idle_counts=(500, 1000),
            join_rate=300.0,
            join_rooms=10,
            drain_s=2.0,
        )


class Progress:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {text}", file=sys.stderr, flush=True)


def rotated(targets: Sequence[Target], turn: int) -> list[Target]:
    turn %= len(targets)
    return [*targets[turn:], *targets[:turn]]


def describe(run: LoadRun) -> str:
    return (
        f"{run.deliveries_per_s:8.0f} deliveries/s, {100 * run.delivered_fraction:5.1f}% "
        f"delivered, p99 {run.latency.p99_ms:6.1f} ms, "
        f"{run.cpu_us_per_delivery:5.1f} us CPU/delivery, server CPU "
        f"{run.usage.server_cpu_percent:3.0f}%"
    )


async def run_scenario(
    name: str,
    servers: dict[str, Server],
    targets: Sequence[Target],
    settings: Settings,
    results: Results,
    say: Callable[[str], None],
    profile_dir: Path | None,
) -> None:
    duration, drain = settings.duration_s, settings.drain_s

    def svg(label: str, target: Target) -> Path | None:
        return None if profile_dir is None else profile_dir / f"{label}-{target.name}.svg"

    if name == "fan-out":
        stepping = {target.name for target in targets}
        for turn, rate in enumerate(settings.fan_out_rates):
            for target in rotated(targets, turn):
                if target.name not in stepping and rate != REFERENCE_RATE:
                    continue
                run = await scenarios.load_run(
                    servers[target.name], "fan-out", rooms=10, members=10,
                    rate_per_member=rate, duration_s=duration, drain_s=drain,
                    profile=svg(f"fan-out-{rate:g}", target),
                )  # fmt: skip
                results.load.append(run)
                say(f"fan-out {rate:g}/s/member {target.name:10} {describe(run)}")
                if not run.sustained:
                    stepping.discard(target.name)
            if not stepping and rate >= REFERENCE_RATE:
                break
        return
    for target in rotated(targets, len(results.load) + len(results.join)):
        server = servers[target.name]
        if name == "ping-pong":
            run = await scenarios.ping_pong(server, duration_s=duration, drain_s=drain)
            results.load.append(run)
            say(f"ping-pong {target.name:10} {describe(run)}")
        elif name == "small-rooms":
            run = await scenarios.load_run(
                server, "small-rooms", rooms=settings.small_rooms, members=2,
                rate_per_member=settings.small_rooms_rate, duration_s=duration, drain_s=drain,
                profile=svg("small-rooms", target),
            )  # fmt: skip
            results.load.append(run)
            say(f"small-rooms {target.name:10} {describe(run)}")
        elif name == "idle":
            for idle in await scenarios.idle_connections(server, settings.idle_counts):
                results.idle.append(idle)
                say(
                    f"idle {target.name:10} {idle.held}/{idle.wanted} held, "
                    f"{idle.rss_per_connection_bytes / 1024:.1f} KiB/connection"
                    + (f" ({idle.failure})" if idle.failure else "")
                )
        elif name == "join-storm":
            join = await scenarios.join_storm(
                server, rate_per_s=settings.join_rate, duration_s=duration,
                rooms=settings.join_rooms, history=10,
            )  # fmt: skip
            results.join.append(join)
            say(
                f"join-storm {target.name:10} {join.joins_per_s:.0f} joins/s, p99 to connected "
                f"{join.time_to_connected.p99_ms:.1f} ms, {join.joined}/{join.attempted} joined"
            )


async def run_all(
    chosen: Sequence[str],
    targets: Sequence[Target],
    settings: Settings,
    say: Callable[[str], None],
    profile_dir: Path | None,
    left_out: Sequence[str] = (),
) -> Results:
    results = Results(left_out=list(left_out))
    for name in chosen:
        # Idle connections are reported with pings off (as every scenario runs) and on.
        here = [*targets, PINGING] if name == "idle" and DURABLE in targets else list(targets)
        say(f"{name}: starting {', '.join(target.name for target in here)}")
        async with contextlib.AsyncExitStack() as stack:
            started = await enter_together(stack, [running(target) for target in here])
            servers = {server.target.name: server for server in started}
            for server in servers.values():
                if server.mode:
                    results.ran.setdefault(server.target.name, server.mode)
            await run_scenario(name, servers, here, settings, results, say, profile_dir)
    return results


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 s windows")
    parser.add_argument("--duration", type=float, help="seconds per load window (5; quick 1)")
    parser.add_argument(
        "--scenario", action="append", choices=SCENARIOS, help="run only this (repeatable)"
    )
    parser.add_argument(
        "--target",
        action="append",
        choices=[target.name for target in TARGETS],
        help="measure only this relay (repeatable)",
    )
    parser.add_argument(
        "--results-dir", type=Path, default=REPO_ROOT / "bench" / "results", help="report folder"
    )
    parser.add_argument(
        "--plot",
        type=Path,
        help="where the p99 plot goes (default: docs/benchmarks-p99.png for a run that is "
        "neither --quick nor limited by --target; else none)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="py-spy flame graphs of every fan-out step and small-rooms window into DIR "
        "(py-spy costs CPU: profile runs are for finding hot spots, not for figures)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["attack"]:
        return attack.main(arguments[1:])
    args = parse_args(arguments)
    duration = args.duration or (1.0 if args.quick else 5.0)
    settings = Settings.quick(duration) if args.quick else Settings.full(duration)
    chosen = args.scenario or list(SCENARIOS)
    targets = [target for target in TARGETS if not args.target or target.name in args.target]
    left_out: list[str] = []
    if not valkey_available() and any(target in VALKEY_TARGETS for target in targets):
        if args.target:
            print("--target valkey needs valkey-server or redis-server on PATH", file=sys.stderr)
            return 2
        # A full run without one still measures everything else, and its report says so.
        left_out = [target.name for target in targets if target in VALKEY_TARGETS]
        targets = [target for target in targets if target not in VALKEY_TARGETS]
    # Only a full run with every relay replaces the documented plot by default.
    whole = not args.quick and not args.target
    plot = args.plot or (REPO_ROOT / "docs" / "benchmarks-p99.png" if whole else None)
    open_files = raise_open_files_limit()
    if args.profile is not None and find_py_spy() is None:
        print("--profile needs py-spy: pip install py-spy", file=sys.stderr)
        return 2
    say = Progress()
    say(f"open-files limit {open_files}; scenarios: {', '.join(chosen)}")
    if left_out:
        say(f"left out {', '.join(left_out)}: no valkey-server or redis-server on PATH")
    started = time.time()
    results = asyncio.run(run_all(chosen, targets, settings, say, args.profile, left_out))
    markdown, data = report.build(results, asdict(settings), started, sys.argv)
    print(markdown)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / f"{stamp}.md").write_text(markdown)
    (args.results_dir / f"{stamp}.json").write_text(report.to_json(data))
    say(f"wrote {args.results_dir / stamp}.md and .json")
    if plot is not None:
        say(report.plot_p99(results, plot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
