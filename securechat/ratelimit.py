"""Rate limits and time budgets, free of clocks and I/O: the caller passes the time."""

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


@final
class TimeInWindow:
    """Adds up the time spent in some state (a room held up, say) over a sliding window.

    One slot per second of the window, so its memory is fixed whatever the caller
    does. The caller passes times in ms, so tests need no clock. ``total`` counts
    every second that overlaps the window in full: it errs high, by under a second.
    """

    __slots__ = ("_newest", "_seconds", "_spent", "_window")

    def __init__(self, window_seconds: int) -> None:
        self._window = window_seconds
        self._spent = [0] * (window_seconds + 1)  # ms spent in the second each slot holds
        self._seconds = [-1] * (window_seconds + 1)  # which second that is
        self._newest = -1  # the latest second anything was recorded in

    def add(self, start_ms: int, end_ms: int) -> None:
        """Record time spent from ``start_ms`` to ``end_ms``; calls come in time order."""
        start_ms = max(start_ms, (end_ms // 1000 - self._window) * 1000)
        while start_ms < end_ms:
            second = start_ms // 1000
            upto = min(end_ms, (second + 1) * 1000)
            slot = second % len(self._spent)
            if self._seconds[slot] != second:
                self._seconds[slot] = second
                self._spent[slot] = 0
            self._spent[slot] += upto - start_ms
            self._newest = second
            start_ms = upto

    def total(self, now_ms: int) -> int:
        """The time recorded in the window that ends at ``now_ms``, in ms."""
        newest = now_ms // 1000
        oldest = newest - self._window
        if self._newest < oldest:
            return 0  # nothing in the window: the common case, asked at every post
        return sum(
            spent
            for second, spent in zip(self._seconds, self._spent, strict=True)
            if oldest <= second <= newest
        )
