"""A token bucket: the per-connection message rate limit, free of clocks and I/O."""

from typing import final


@final
class TokenBucket:
    """Allows ``rate`` events per second on average and ``burst`` at once.

    The caller passes the current time, so tests need no clock.
    """

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one; return whether the event is allowed."""
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


@final
class WindowCounter:
    """Counts events in a sliding window; says when a threshold is crossed."""

    __slots__ = ("_events", "_threshold", "_window")

    def __init__(self, window: float, threshold: int) -> None:
        self._window = window
        self._threshold = threshold
        self._events: list[float] = []

    def add(self, now: float) -> bool:
        """Record one event; return True once more than ``threshold`` are in the window."""
        cutoff = now - self._window
        # The list holds at most threshold + 1 entries, so this stays cheap.
        self._events = [t for t in self._events if t > cutoff]
        self._events.append(now)
        return len(self._events) > self._threshold
