"""How many TCP connections the process can hold, and the count of those it holds.

Every open connection costs a file descriptor. When the process runs out,
``accept`` fails with EMFILE, Trio's accept loop logs a traceback and retries
every 0.1 s, and every newcomer waits in the kernel's backlog until it times
out. So the server raises its descriptor limit as far as it may, keeps a
reserve of descriptors for itself, and refuses connections above the rest with
a quick 503 instead (see ``boundary``).
"""

import logging
import resource
import time
from dataclasses import dataclass
from typing import Final, final

from securechat.limits import (
    ACCEPT_LOG_INTERVAL_SECONDS,
    DESCRIPTOR_RESERVE_DIVISOR,
    DESCRIPTOR_RESERVE_MIN,
    MAX_DESCRIPTORS,
    REFUSALS_IN_FLIGHT,
)

logger: Final = logging.getLogger("securechat.capacity")

MIN_DERIVED_CONNECTIONS: Final = 16  # even a tiny descriptor limit serves a few people

ACCEPT_LOGGER: Final = "trio.serve_listeners"  # where Trio reports a failed accept


def raise_descriptor_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit now in force.

    Error handling: a platform that refuses (macOS caps it below an unlimited
    hard limit) keeps its current limit, which is then returned.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_DESCRIPTORS
    target = MAX_DESCRIPTORS if hard == resource.RLIM_INFINITY else hard
    if soft >= target:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft
    return target


def derived_max_connections(descriptors: int) -> int:
    """The connection cap a descriptor limit allows: the limit less a reserve.

    The reserve is ``max(DESCRIPTOR_RESERVE_MIN, descriptors // DESCRIPTOR_RESERVE_DIVISOR)``:
    1,024 descriptors give 896 connections, 256 give 192, 65,536 give 57,344.
    It holds the database and its WAL, the listening sockets, the log and the
    over-cap connections being refused (``REFUSALS_IN_FLIGHT``).
    """
    reserve = max(DESCRIPTOR_RESERVE_MIN, descriptors // DESCRIPTOR_RESERVE_DIVISOR)
    return max(MIN_DERIVED_CONNECTIONS, descriptors - reserve)


def effective_max_connections(configured: int, descriptors: int) -> int:
    """``configured`` (0 = derived), but never more than the descriptors allow."""
    derived = derived_max_connections(descriptors)
    if configured <= 0:
        return derived
    if configured > derived:
        logger.warning(
            "max-connections %d needs more than the %d descriptors allowed; using %d",
            configured,
            descriptors,
            derived,
        )
        return derived
    return configured


@final
@dataclass(frozen=True, slots=True)
class GaugeStatistics:
    open: int  # TCP connections being served now
    limit: int  # the cap on them
    refused: int  # connections refused for the cap since start
    failed: int  # connections closed because their handling raised


@final
class ConnectionGauge:
    """Counts the server's open TCP connections against its cap. One per server."""

    __slots__ = ("_failed", "_limit", "_open", "_refused", "_refusing")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._open = 0
        self._refused = 0
        self._refusing = 0
        self._failed = 0

    def try_open(self) -> bool:
        """Count a newly accepted connection; False if the server is at its cap."""
        if self._open >= self._limit:
            self._refused += 1
            return False
        self._open += 1
        return True

    def close(self) -> None:
        """Uncount a connection ``try_open`` admitted."""
        self._open -= 1

    def try_start_refusal(self) -> bool:
        """Whether a refused connection may be answered (503) rather than just closed.

        Answering holds its descriptor for up to ``REFUSAL_SECONDS``; at most
        ``REFUSALS_IN_FLIGHT`` do at once, which the descriptor reserve covers.
        """
        if self._refusing >= REFUSALS_IN_FLIGHT:
            return False
        self._refusing += 1
        return True

    def end_refusal(self) -> None:
        self._refusing -= 1

    def count_failure(self) -> None:
        self._failed += 1

    def statistics(self) -> GaugeStatistics:
        return GaugeStatistics(self._open, self._limit, self._refused, self._failed)


@final
class EveryInterval(logging.Filter):
    """Lets one record through per ``interval`` seconds, without its traceback.

    On Trio's accept logger: when descriptors run out it reports every failed
    accept, with a traceback, ten times a second.
    """

    def __init__(self, interval: float = ACCEPT_LOG_INTERVAL_SECONDS) -> None:
        super().__init__()
        self._interval = interval
        self._last: float | None = None
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if self._last is not None and now - self._last < self._interval:
            self._dropped += 1
            return False
        if self._dropped:
            record.msg = f"{record.msg} ({self._dropped} more like it not shown)"
        self._last, self._dropped = now, 0
        record.exc_info, record.exc_text = None, None
        return True


def quiet_accept_failures() -> None:
    """Rate-limit Trio's accept-failure log (idempotent)."""
    accept_logger = logging.getLogger(ACCEPT_LOGGER)
    if not any(isinstance(f, EveryInterval) for f in accept_logger.filters):
        accept_logger.addFilter(EveryInterval())
