"""The report of one invocation: markdown tables, ratios, the issue's targets, JSON, a plot."""

import json
import math
import os
import platform
import shlex
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final

from bench.records import IdleRun, JoinRun, LoadRun, Results
from bench.servers import (
    DURABLE,
    EPHEMERAL,
    PEER,
    PINGING,
    REPO_ROOT,
    STACK,
    TARGETS,
    VALKEY,
    VALKEY_2,
    Target,
)

KIB: Final = 1024
MIB: Final = 1024 * KIB
REFERENCE_RATE: Final = 10.0  # msg/s per member: the 10 x 10 fan-out step the targets name
FAN_OUT_TARGET: Final = 2.5  # CPU per delivery at the reference step, x the peer's, at most
PING_PONG_TARGET: Final = 2.5  # CPU per delivery in ping-pong, x the peer's, at most
SMALL_ROOMS_TARGET: Final = 1.6  # CPU per delivery in many small rooms, x the peer's, at most
SUSTAINED_TARGET_PER_S: Final = 10_000  # deliveries/s...
SUSTAINED_TARGET_P99_MS: Final = 20.0  # ...with p99 under this
# The highest sustained fan-out step before the hot-path work was 10 msg/s per member
# (2026-11-26, commit 042503d); the target is 1.5 x that.
SUSTAINED_STEP_TARGET: Final = 15.0
IDLE_TARGET_BYTES: Final = 30 * KIB  # per connection at 5,000 connections
IDLE_TARGET_COUNT: Final = 5000
DURABILITY_TARGET: Final = 1.15  # durable CPU per delivery over ephemeral, at most
JOIN_TARGET_PER_S: Final = 300.0
JOIN_TARGET_P99_MS: Final = 100.0
JOIN_COMPLETE: Final = 0.99  # of offered joins that must complete for the rate to count
# With one process, CPU per delivery with rooms in Valkey (the relay's and Valkey's own)
# over the SQLite mode's, at most: the Valkey hop is per message, not per delivery.
VALKEY_TARGET: Final = 1.3


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_kib = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    return {
        "cpus": str(os.cpu_count()),
        "cpu_model": model,
        "memory": f"{memory_kib / MIB:.1f} GiB",
        "python": platform.python_version(),
        "kernel": platform.release(),
        "commit": _git_commit(),
    }


def _git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "describe", "--always", "--dirty"],  # noqa: S607 - git from PATH, fixed args
            cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head


def ratio(numerator: float, denominator: float) -> float:
    if denominator == 0 or math.isnan(numerator) or math.isnan(denominator):
        return float("nan")
    return numerator / denominator


def _f(value: float, digits: int = 1) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


LOAD_HEADER: Final = (
    "relay", "deliveries/s", "delivered", "p50 ms", "p99 ms", "max ms",
    "server CPU µs/delivery", "server CPU", "server RSS MiB", "generator CPU", "note",
)  # fmt: skip


def _load_cells(run: LoadRun) -> list[str]:
    return [
        run.target,
        _f(run.deliveries_per_s, 0),
        f"{_f(100 * run.delivered_fraction, 2)}%",
        _f(run.latency.p50_ms, 2),
        _f(run.latency.p99_ms, 2),
        _f(run.latency.max_ms, 1),
        _f(run.cpu_us_per_delivery, 1),
        f"{_f(run.usage.server_cpu_percent, 0)}%",
        _f(run.usage.server_rss_bytes / MIB, 1),
        f"{_f(run.usage.generator_cpu_percent, 0)}%",
        _trouble(run),
    ]


def _trouble(run: LoadRun) -> str:
    """Connections the relay dropped and error frames it sent, if any."""
    notes = []
    if run.dropped:
        codes = ", ".join(f"{count} x {code}" for code, count in sorted(run.close_codes.items()))
        notes.append(
            f"{run.dropped} connections dropped" + (f" (closed: {codes})" if codes else "")
        )
    if run.errors:
        notes.append(f"{run.errors} error frames")
    return ", ".join(notes)


def _ratio_lines(what: str, values: dict[str, float], higher_is_better: bool = False) -> list[str]:
    """securechat/peer, durable/ephemeral and the stack's share of one figure, where both ran."""
    lines = []
    pairs = (
        (DURABLE.name, PEER.name),
        (EPHEMERAL.name, PEER.name),
        (DURABLE.name, EPHEMERAL.name),
        (EPHEMERAL.name, STACK.name),
        (STACK.name, PEER.name),
        (VALKEY.name, DURABLE.name),
        (VALKEY_2.name, DURABLE.name),
        (VALKEY_2.name, VALKEY.name),
    )
    for top, bottom in pairs:
        if top in values and bottom in values:
            value = ratio(values[top], values[bottom])
            better = " (higher is better)" if higher_is_better else ""
            lines.append(f"- {what}, {top} / {bottom}: **{_f(value, 2)}**{better}")
    return lines


def _valkey_share(runs: Iterable[LoadRun]) -> list[str]:
    """For each Valkey target's run: how much of its CPU was Valkey's, and Valkey's memory."""
    lines = []
    for run in runs:
        if run.usage.valkey_cpu_s is None:
            continue
        share = ratio(run.usage.valkey_cpu_s, run.usage.server_cpu_s)
        valkey_rss = run.usage.valkey_rss_bytes
        lines.append(
            f"- {run.target}: of {_f(run.cpu_us_per_delivery)} µs of server CPU per delivery, "
            f"the relay's {_f(run.cpu_us_per_delivery - run.valkey_cpu_us_per_delivery)} and "
            f"Valkey's {_f(run.valkey_cpu_us_per_delivery)} ({_f(100 * share, 0)}%); "
            f"Valkey's RSS {'-' if valkey_rss is None else _f(valkey_rss / MIB)} MiB "
            "(not in the table's server RSS)"
        )
    return lines


def _highest_sustained(runs: Sequence[LoadRun], target: str) -> LoadRun | None:
    """The highest fan-out step the target held, below its first failed step."""
    best = None
    for run in sorted(
        (run for run in runs if run.target == target), key=lambda run: run.rate_per_member
    ):
        if not run.sustained:
            break
        best = run
    return best


def build(
    results: Results, settings: dict[str, Any], started: float, argv: Sequence[str]
) -> tuple[str, dict[str, Any]]:
    """The markdown report and the JSON document of one invocation."""
    host = machine()
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started))
    command = shlex.join(["python", "-m", "bench", *argv[1:]])
    lines = [
        f"# securechat benchmark, {when}",
        "",
        f"`{command}` on {host['cpus']} x {host['cpu_model']}, {host['memory']}, "
        f"Python {host['python']}, Linux {host['kernel']}, commit `{host['commit']}`.",
        "",
        "Relays: "
        + "; ".join(f"**{target.name}** = {target.description}" for target in TARGETS)
        + ". Server CPU is utime+stime of the server process over the load window "
        "(/proc/PID/stat), for a Valkey target that of its relay processes and of its "
        "redis-server together; server RSS is the relay processes' alone (Valkey's is "
        "reported apart). Latency is from send to receipt at every receiver, sender included.",
        "",
    ]
    lines += [f"- {name} ran as: {mode}" for name, mode in results.ran.items()]
    if results.left_out:
        lines.append(
            f"- not run: {', '.join(results.left_out)} (no valkey-server or redis-server on PATH)"
        )
    if results.ran or results.left_out:
        lines.append("")
    ratios: dict[str, dict[str, float]] = {}

    def scenario_ratios(key: str, what: str, values: dict[str, float]) -> list[str]:
        ratios[key] = values
        return _ratio_lines(what, values)

    ping = [run for run in results.load if run.scenario == "ping-pong"]
    if ping:
        lines += ["## Ping-pong: 1 room x 2, one message in flight", ""]
        lines += _table(LOAD_HEADER, (_load_cells(run) for run in ping))
        lines += [
            "",
            *scenario_ratios(
                "ping-pong.cpu_us_per_delivery",
                "server CPU per delivery",
                {run.target: run.cpu_us_per_delivery for run in ping},
            ),
        ]
        lines += _ratio_lines("p99 latency", {run.target: run.latency.p99_ms for run in ping})
        lines += _valkey_share(ping)
        lines.append("")

    fan = [run for run in results.load if run.scenario == "fan-out"]
    if fan:
        lines += _fan_out_section(fan, scenario_ratios)

    small = [run for run in results.load if run.scenario == "small-rooms"]
    if small:
        first = small[0]
        lines += [
            f"## Many small rooms: {first.rooms:,} rooms x 2, "
            f"{first.rate_per_member:g} msg/s per member",
            "",
        ]
        lines += _table(LOAD_HEADER, (_load_cells(run) for run in small))
        lines += [
            "",
            *scenario_ratios(
                "small-rooms.cpu_us_per_delivery",
                "server CPU per delivery",
                {run.target: run.cpu_us_per_delivery for run in small},
            ),
        ]
        lines += _valkey_share(small)
        lines.append("")

    if results.idle:
        lines += _idle_section(results.idle, scenario_ratios)
    if results.join:
        lines += _join_section(results.join, scenario_ratios)

    targets = _targets(results)
    lines += ["## The targets (securechat durable; Valkey against it)", ""]
    lines += _table(
        ("target", "measured", "met"),
        ([name, measured, {True: "yes", False: "**no**", None: "not measured"}[met]]
         for name, measured, met in targets),
    )  # fmt: skip
    lines.append("")
    data = {
        "started": started,
        "command": command,
        "machine": host,
        "settings": settings,
        "load": [run.to_json() for run in results.load],
        "idle": [run.to_json() for run in results.idle],
        "join": [run.to_json() for run in results.join],
        "ran": results.ran,
        "left_out": results.left_out,
        "ratios": ratios,
        "targets": [{"target": n, "measured": m, "met": met} for n, m, met in targets],
    }
    return "\n".join(lines), data


def _fan_out_section(
    fan: list[LoadRun], scenario_ratios: Callable[[str, str, dict[str, float]], list[str]]
) -> list[str]:
    lines = [
        "## Fan-out: 10 rooms x 10 members, stepping the rate per member",
        "",
        f"A step is sustained when at least 99% of deliveries arrive and p99 ≤ 100 ms; "
        f"each relay steps up until it fails one (the {REFERENCE_RATE:g} msg/s step always runs).",
        "",
    ]
    header = ("msg/s/member", "offered/s", *LOAD_HEADER[:-1], "sustained", LOAD_HEADER[-1])
    ordered = sorted(fan, key=lambda run: (run.rate_per_member, run.target))
    lines += _table(
        header,
        (
            [f"{run.rate_per_member:g}", _f(run.offered_per_s, 0), *_load_cells(run)[:-1],
             "yes" if run.sustained else "no", _trouble(run)]
            for run in ordered
        ),
    )  # fmt: skip
    lines.append("")
    top_rate = max(run.rate_per_member for run in fan)
    for target in dict.fromkeys(run.target for run in fan):
        best = _highest_sustained(fan, target)
        held = (
            f"{best.rate_per_member:g} msg/s/member, {_f(best.deliveries_per_s, 0)} deliveries/s, "
            f"p99 {_f(best.latency.p99_ms, 1)} ms"
            if best
            else "none"
        )
        if best and best.rate_per_member == top_rate:
            held += " (the last step run: its limit is higher)"
        lines.append(f"- highest sustained step, {target}: {held}")
    reference = [run for run in fan if run.rate_per_member == REFERENCE_RATE]
    if reference:
        lines += [
            "",
            *scenario_ratios(
                "fan-out.cpu_us_per_delivery",
                f"server CPU per delivery at {REFERENCE_RATE:g} msg/s/member",
                {run.target: run.cpu_us_per_delivery for run in reference},
            ),
        ]
    peaks = {
        target: best.deliveries_per_s
        for target in dict.fromkeys(run.target for run in fan)
        if (best := _highest_sustained(fan, target)) is not None
    }
    lines += _ratio_lines("highest sustained deliveries/s", peaks, higher_is_better=True)
    lines += _valkey_share(reference)
    if any(run.target == VALKEY_2.name for run in fan):
        lines.append(
            f"- {VALKEY_2.name} runs two relay processes beside its redis-server and the load "
            f"generator on this machine's {os.cpu_count()} CPUs: where they are fewer than "
            "four, the processes take cores from each other and from the generator, so its "
            "throughput and latency say what this machine holds, not what two cores of its own "
            "would"
        )
    lines.append("")
    return lines


def _idle_section(
    idle: list[IdleRun], scenario_ratios: Callable[[str, str, dict[str, float]], list[str]]
) -> list[str]:
    lines = [
        "## Idle connections after hello (rooms of 10)",
        "",
        "RSS per connection = (server RSS with the connections held - its RSS before any) "
        "/ connections held.",
        "",
    ]
    lines += _table(
        ("relay", "connections", "held", "server RSS MiB", "RSS per connection KiB",
         "connect time s", "note"),
        ([run.target, f"{run.wanted:,}", f"{run.held:,}", _f(run.rss_bytes / MIB, 1),
          _f(run.rss_per_connection_bytes / KIB, 1), _f(run.connect_s, 1), run.failure or ""]
         for run in idle),
    )  # fmt: skip
    most = max(run.wanted for run in idle)
    lines += [
        "",
        *scenario_ratios(
            "idle.rss_per_connection",
            f"RSS per connection at {most:,}",
            {run.target: run.rss_per_connection_bytes for run in idle if run.wanted == most},
        ),
    ]
    for run in idle:
        if run.valkey_rss_bytes is not None and run.valkey_baseline_rss_bytes is not None:
            lines.append(
                f"- {run.target} at {run.wanted:,}: Valkey's RSS (not counted above) "
                f"{_f(run.valkey_baseline_rss_bytes / MIB)} MiB before, "
                f"{_f(run.valkey_rss_bytes / MIB)} MiB with {run.held:,} held, "
                f"{_f(run.valkey_rss_per_connection_bytes / KIB, 2)} KiB per connection"
            )
    lines.append("")
    return lines


def _join_section(
    join: list[JoinRun], scenario_ratios: Callable[[str, str, dict[str, float]], list[str]]
) -> list[str]:
    lines = [
        f"## Join storm: {join[0].offered_per_s:g} joins/s offered "
        "(connect, hello, history of 10, `connected`, leave)",
        "",
    ]
    lines += _table(
        ("relay", "joined", "joins/s", "p50 ms", "p99 ms", "max ms", "full history",
         "server CPU µs/join", "server CPU", "generator CPU", "note"),
        ([run.target, f"{run.joined:,}/{run.attempted:,}", _f(run.joins_per_s, 0),
          _f(run.time_to_connected.p50_ms, 1), _f(run.time_to_connected.p99_ms, 1),
          _f(run.time_to_connected.max_ms, 1), f"{run.full_history:,}",
          _f(run.cpu_us_per_join, 0), f"{_f(run.usage.server_cpu_percent, 0)}%",
          f"{_f(run.usage.generator_cpu_percent, 0)}%", run.failure or ""]
         for run in join),
    )  # fmt: skip
    lines += [
        "",
        *scenario_ratios(
            "join-storm.cpu_us_per_join",
            "server CPU per join",
            {run.target: run.cpu_us_per_join for run in join},
        ),
    ]
    lines += _ratio_lines(
        "p99 time to connected", {run.target: run.time_to_connected.p99_ms for run in join}
    )
    for run in join:
        if run.usage.valkey_cpu_s is not None and run.joined:
            valkey_us = 1e6 * run.usage.valkey_cpu_s / run.joined
            lines.append(
                f"- {run.target}: of {_f(run.cpu_us_per_join, 0)} µs of server CPU per join, "
                f"Valkey's {_f(valkey_us, 0)}"
            )
    lines.append("")
    return lines


def _targets(results: Results) -> list[tuple[str, str, bool | None]]:
    """Each of the issues' targets: what this run measured and whether it is met."""
    fan = {
        run.target: run
        for run in results.load
        if run.scenario == "fan-out" and run.rate_per_member == REFERENCE_RATE
    }
    durable, peer, ephemeral = fan.get(DURABLE.name), fan.get(PEER.name), fan.get(EPHEMERAL.name)
    rows: list[tuple[str, str, bool | None]] = [
        _versus(
            f"fan-out 10 x 10 at 10 msg/s/member: CPU per delivery ≤ {FAN_OUT_TARGET} x the peer's",
            durable,
            peer,
            FAN_OUT_TARGET,
        ),
        _versus(
            f"ping-pong: CPU per delivery ≤ {PING_PONG_TARGET} x the peer's",
            *_scenario_pair(results, "ping-pong"),
            PING_PONG_TARGET,
        ),
        _versus(
            f"many small rooms (1,000 x 2): CPU per delivery ≤ {SMALL_ROOMS_TARGET} x the peer's",
            *_scenario_pair(results, "small-rooms"),
            SMALL_ROOMS_TARGET,
        ),
    ]

    name = "10,000 deliveries/s sustained with p99 ≤ 20 ms"
    if durable:
        met = (
            durable.offered_per_s >= SUSTAINED_TARGET_PER_S
            and durable.delivered_fraction >= 0.99
            and durable.latency.p99_ms <= SUSTAINED_TARGET_P99_MS
        )
        measured = (
            f"{_f(durable.deliveries_per_s, 0)}/s of {_f(durable.offered_per_s, 0)} offered, "
            f"{_f(100 * durable.delivered_fraction, 2)}% delivered, "
            f"p99 {_f(durable.latency.p99_ms, 1)} ms"
        )
        rows.append((name, measured, met))
    else:
        rows.append((name, "-", None))

    name = f"highest sustained fan-out step ≥ {SUSTAINED_STEP_TARGET:g} msg/s/member (1.5 x 10)"
    fan_runs = [run for run in results.load if run.scenario == "fan-out"]
    best = _highest_sustained(fan_runs, DURABLE.name)
    if best is not None:
        measured = (
            f"{best.rate_per_member:g} msg/s/member, {_f(best.deliveries_per_s, 0)} deliveries/s"
        )
        rows.append((name, measured, best.rate_per_member >= SUSTAINED_STEP_TARGET))
    else:
        rows.append(
            (name, "-" if not fan_runs else "no step sustained", None if not fan_runs else False)
        )

    for target, pings in ((DURABLE, "pings off"), (PINGING, "pings every 25 s")):
        name = f"≤ 30 KiB server RSS per idle connection at 5,000, {pings}"
        idle = [run for run in results.idle if run.target == target.name]
        at_target = [run for run in idle if run.wanted == IDLE_TARGET_COUNT]
        if at_target and at_target[0].held == IDLE_TARGET_COUNT:
            per = at_target[0].rss_per_connection_bytes
            rows.append((name, f"{_f(per / KIB)} KiB", per <= IDLE_TARGET_BYTES))
        elif at_target:
            rows.append((name, at_target[0].failure or "not all held", False))
        else:
            rows.append((name, "- (run without --quick)", None))

    name = "durable ≤ 1.15 x ephemeral CPU per delivery (10 x 10 at 10 msg/s/member)"
    if durable and ephemeral:
        value = ratio(durable.cpu_us_per_delivery, ephemeral.cpu_us_per_delivery)
        rows.append((name, f"x {_f(value, 2)}", value <= DURABILITY_TARGET))
    else:
        rows.append((name, "-", None))

    valkey_fan = fan.get(VALKEY.name)
    for what, mine, sqlite in (
        ("fan-out 10 x 10 at 10 msg/s/member", valkey_fan, durable),
        ("ping-pong", *_scenario_pair(results, "ping-pong", VALKEY, DURABLE)),
        ("many small rooms", *_scenario_pair(results, "small-rooms", VALKEY, DURABLE)),
    ):
        rows.append(
            _versus(
                f"{what}: CPU per delivery of {VALKEY.name} (1 process, relay + Valkey) "
                f"≤ {VALKEY_TARGET} x {DURABLE.name} (SQLite)",
                mine,
                sqlite,
                VALKEY_TARGET,
            )
        )

    name = "≥ 300 joins/s with p99 to `connected` < 100 ms"
    joins = [run for run in results.join if run.target == DURABLE.name]
    if joins:
        run = joins[0]
        met = (
            run.offered_per_s >= JOIN_TARGET_PER_S
            and run.joined >= JOIN_COMPLETE * run.attempted
            and run.time_to_connected.p99_ms < JOIN_TARGET_P99_MS
        )
        measured = (
            f"{run.joined}/{run.attempted} joined at {run.offered_per_s:g}/s offered "
            f"({_f(run.joins_per_s, 0)}/s), p99 {_f(run.time_to_connected.p99_ms, 1)} ms"
        )
        rows.append((name, measured, met))
    else:
        rows.append((name, "-", None))
    return rows


def _no_nan(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _no_nan(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_no_nan(item) for item in value]
    return value


def to_json(data: dict[str, Any]) -> str:
    """Strict JSON: a figure that could not be measured is null, not NaN."""
    return json.dumps(_no_nan(data), indent=2, ensure_ascii=False) + "\n"


def plot_p99(results: Results, path: Path) -> str:
    """Plot p99 latency against offered deliveries/s of the fan-out steps; say what happened."""
    fan = [run for run in results.load if run.scenario == "fan-out"]
    if not fan:
        return "no fan-out runs: no plot"
    try:
        import matplotlib as mpl  # an optional extra: imported only here

        mpl.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install '.[bench]'): no plot"
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=120)
    for target in TARGETS:
        runs = sorted(
            (run for run in fan if run.target == target.name), key=lambda run: run.offered_per_s
        )
        if runs:
            axes.plot(
                [run.offered_per_s for run in runs],
                [run.latency.p99_ms for run in runs],
                marker="o",
                label=target.description,
            )
    axes.axhline(SUSTAINED_TARGET_P99_MS, color="grey", linestyle=":", linewidth=1)
    axes.axhline(100, color="grey", linestyle="--", linewidth=1)
    axes.set_yscale("log")
    axes.set_xlabel("offered deliveries/s (10 rooms x 10 members)")
    axes.set_ylabel("p99 latency, ms (log)")
    axes.set_title("Fan-out: p99 latency against offered load")
    axes.grid(visible=True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return f"wrote {path}"


def _scenario_pair(
    results: Results, scenario: str, mine: Target = DURABLE, other: Target = PEER
) -> tuple[LoadRun | None, LoadRun | None]:
    """Two relays' runs of a one-window scenario: by default the durable one's and the peer's."""
    runs = {run.target: run for run in results.load if run.scenario == scenario}
    return runs.get(mine.name), runs.get(other.name)


def _versus(
    name: str, mine: LoadRun | None, other: LoadRun | None, most: float
) -> tuple[str, str, bool | None]:
    """A target on the ratio of two relays' CPU per delivery, measured in the same run."""
    if mine is None or other is None:
        return (name, "-", None)
    value = ratio(mine.cpu_us_per_delivery, other.cpu_us_per_delivery)
    measured = (
        f"{_f(mine.cpu_us_per_delivery)} µs vs {_f(other.cpu_us_per_delivery)} µs "
        f"(x {_f(value, 2)})"
    )
    return (name, measured, value <= most)
