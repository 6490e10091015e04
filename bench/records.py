"""What one measured run found, as frozen records that turn into table rows and JSON."""

from dataclasses import asdict, dataclass, field
from typing import Any, Final

MS_PER_NS: Final = 1e-6
SUSTAINED_FRACTION: Final = 0.99  # a fan-out step holds if this much arrives...
SUSTAINED_P99_MS: Final = 100.0  # ...with the 99th percentile latency under this


@dataclass(frozen=True, slots=True)
class Latency:
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, samples_ns: list[int]) -> "Latency":
        """Nearest-rank percentiles; a run with no samples reports NaN."""
        if not samples_ns:
            nan = float("nan")
            return cls(0, nan, nan, nan)
        ordered = sorted(samples_ns)

        def rank(p: float) -> float:
            return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * MS_PER_NS

        return cls(len(ordered), rank(0.50), rank(0.99), ordered[-1] * MS_PER_NS)


@dataclass(frozen=True, slots=True)
class Usage:
    """The server's and the generator's use of the machine over one window."""

    window_s: float
    server_cpu_s: float  # the relay processes', plus their Valkey's for a Valkey target
    server_rss_bytes: int  # the relay processes' (summed), never Valkey's
    generator_cpu_s: float
    valkey_cpu_s: float | None = None  # of server_cpu_s, what Valkey used; None without one
    valkey_rss_bytes: int | None = None  # Valkey's VmRSS at the window's end

    @property
    def server_cpu_percent(self) -> float:
        return 100 * self.server_cpu_s / self.window_s

    @property
    def generator_cpu_percent(self) -> float:
        return 100 * self.generator_cpu_s / self.window_s


@dataclass(frozen=True, slots=True)
class LoadRun:
    """Rooms of members sending messages: ping-pong, a fan-out step, many small rooms."""

    scenario: str
    target: str
    rooms: int
    members: int
    rate_per_member: float  # messages/s each member sends; 0 for ping-pong (closed loop)
    sent: int
    expected: int
    delivered: int
    errors: int
    dropped: int
    close_codes: dict[int, int]  # of the dropped connections, by the relay's close code
    latency: Latency
    usage: Usage

    @property
    def offered_per_s(self) -> float:
        """Deliveries per second asked of the relay: each message goes to every member."""
        return self.rooms * self.members * self.rate_per_member * self.members

    @property
    def deliveries_per_s(self) -> float:
        return self.delivered / self.usage.window_s

    @property
    def delivered_fraction(self) -> float:
        return self.delivered / self.expected if self.expected else float("nan")

    @property
    def cpu_us_per_delivery(self) -> float:
        return 1e6 * self.usage.server_cpu_s / self.delivered if self.delivered else float("nan")

    @property
    def valkey_cpu_us_per_delivery(self) -> float:
        """Valkey's part of ``cpu_us_per_delivery``; NaN for a target without one."""
        if self.usage.valkey_cpu_s is None or not self.delivered:
            return float("nan")
        return 1e6 * self.usage.valkey_cpu_s / self.delivered

    @property
    def sustained(self) -> bool:
        return (
            self.delivered_fraction >= SUSTAINED_FRACTION
            and self.latency.p99_ms <= SUSTAINED_P99_MS
        )

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "offered_per_s": self.offered_per_s,
            "deliveries_per_s": self.deliveries_per_s,
            "delivered_fraction": self.delivered_fraction,
            "cpu_us_per_delivery": self.cpu_us_per_delivery,
            "valkey_cpu_us_per_delivery": self.valkey_cpu_us_per_delivery,
            "server_cpu_percent": self.usage.server_cpu_percent,
            "generator_cpu_percent": self.usage.generator_cpu_percent,
            "sustained": self.sustained,
        }


@dataclass(frozen=True, slots=True)
class IdleRun:
    """Connections held open after hello, and the server memory they cost."""

    target: str
    wanted: int
    held: int
    baseline_rss_bytes: int
    rss_bytes: int
    connect_s: float
    failure: str | None  # why fewer than ``wanted`` are held
    valkey_baseline_rss_bytes: int | None = None  # a Valkey target's Valkey, apart from the relay
    valkey_rss_bytes: int | None = None

    @property
    def rss_per_connection_bytes(self) -> float:
        """The relay processes' growth per connection held (never Valkey's)."""
        if not self.held:
            return float("nan")
        return (self.rss_bytes - self.baseline_rss_bytes) / self.held

    @property
    def valkey_rss_per_connection_bytes(self) -> float:
        """Valkey's growth per connection held (its presence entries); NaN without one."""
        if not self.held or self.valkey_rss_bytes is None or self.valkey_baseline_rss_bytes is None:
            return float("nan")
        return (self.valkey_rss_bytes - self.valkey_baseline_rss_bytes) / self.held

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "rss_per_connection_bytes": self.rss_per_connection_bytes,
            "valkey_rss_per_connection_bytes": self.valkey_rss_per_connection_bytes,
        }


@dataclass(frozen=True, slots=True)
class JoinRun:
    """Clients arriving at a fixed rate: connect, hello, history, `connected`, leave."""

    target: str
    offered_per_s: float
    attempted: int
    joined: int
    full_history: int  # joins whose history frame held the whole seeded history
    time_to_connected: Latency
    usage: Usage
    failure: str | None  # the first failed join's reason, if any

    @property
    def joins_per_s(self) -> float:
        return self.joined / self.usage.window_s

    @property
    def cpu_us_per_join(self) -> float:
        return 1e6 * self.usage.server_cpu_s / self.joined if self.joined else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "joins_per_s": self.joins_per_s,
            "cpu_us_per_join": self.cpu_us_per_join,
            "server_cpu_percent": self.usage.server_cpu_percent,
        }


@dataclass
class Results:
    """Every run of one invocation, in the order they ran."""

    load: list[LoadRun] = field(default_factory=list)
    idle: list[IdleRun] = field(default_factory=list)
    join: list[JoinRun] = field(default_factory=list)
    ran: dict[str, str] = field(default_factory=dict)  # target -> how it ran, where that varies
    left_out: list[str] = field(default_factory=list)  # targets this machine could not run
