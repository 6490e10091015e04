"""The budget for new rooms: free while there is room in it, a proof of work beyond.

Creating a room costs the server a row, a verifier and, with every message, disk
that stays for the retention period; without a price one client made hundreds of
rooms a second. The budget is a leaky bucket per scope: a *level* that each new
room raises by one and that drains at ``rate`` rooms per minute. Below ``burst``
a new room is free, exactly as without the budget. Above it the next new room
needs a proof of ``bits`` zero bits, and the price doubles each time the excess
over the burst doubles, so a flood pays in proportion to how far over the
budget it is, and its work must grow faster than its room count. In the long
run the flood is pressed down to ``rate`` (until the cap on the difficulty,
which keeps a browser able to finish); when it stops, the level drains and the
price falls back to zero, bit by bit, as Tor's onion services do (proposal 327).

Two scopes: one for the whole server (with several relay processes on Valkey, all
of them together: each shares its charges and takes the common level with its
heartbeat), and one per source address where the source is known (a direct
peer, or a trusted proxy's forwarded address; kept by each process, in memory
only). The price is the higher of the two. Per-source state is bounded: the least recently
used source is forgotten first. Nothing here does I/O or reads a clock: the
caller passes the time, in seconds.
"""

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final, final

from securechat.sources import source_key

BASE_BITS: Final = 14  # the first price over the burst: 16k hashes, some 20 ms in a browser
# The cap: 2**20 hashes, 1.2-1.5 s for Chromium and the Python client here, and
# still well inside the 60 s to answer for a phone ten times slower (docs/protocol.md).
MAX_BITS: Final = 20
# The excess over the burst that reaches the cap. The level never goes higher, so
# the price is back at zero at most this many rooms' drain time after a flood ends.
MAX_EXCESS: Final = 2 ** (MAX_BITS - BASE_BITS)
MAX_SOURCES: Final = 4096  # sources remembered; the least recently seen is dropped first


@final
@dataclass(frozen=True, slots=True)
class BudgetSettings:
    rooms_per_minute: float  # the whole server's free new rooms per minute, sustained
    burst: int  # the whole server's free new rooms at once
    source_rooms_per_minute: float  # one source's free new rooms per minute, sustained
    source_burst: int  # one source's free new rooms at once
    max_sources: int = MAX_SOURCES


@final
@dataclass(frozen=True, slots=True)
class BudgetStatistics:
    level: float  # the server-wide level, in rooms
    bits: int  # the price of a new room from an unknown source now
    sources: int  # per-source levels kept


@final
class _Level:
    """A leaky bucket: ``value`` rooms, draining at ``rate`` per second, at most ``cap``."""

    __slots__ = ("_last", "_rate", "cap", "value")

    def __init__(self, rate: float, cap: float, now: float) -> None:
        self._rate = rate
        self.cap = cap
        self.value = 0.0
        self._last = now

    def drain(self, now: float) -> float:
        elapsed = max(0.0, now - self._last)
        self._last = max(self._last, now)
        self.value = max(0.0, self.value - elapsed * self._rate)
        return self.value

    def add(self, now: float) -> None:
        self.value = min(self.cap, self.drain(now) + 1.0)


def price(level: float, burst: int) -> int:
    """The bits a new room needs at ``level`` with ``burst`` free: 0 while it fits.

    The room being created counts: at ``burst - 1`` it still fits. Over the burst
    the price is ``BASE_BITS`` plus one bit per doubling of the excess (in whole
    rooms, the one being made included), capped at ``MAX_BITS``.
    """
    excess = level + 1.0 - burst
    if excess <= 0:
        return 0
    # Rounded up to whole rooms, so that what drained since the last room (a sliver,
    # on a busy server) does not move the price.
    return min(MAX_BITS, BASE_BITS + math.floor(math.log2(math.ceil(excess))))


@final
class CreationBudget:
    """Says what a new room costs now, and charges it when the room is made.

    ``bits`` and ``charge`` are synchronous, so a caller that calls both without a
    checkpoint in between cannot be overtaken by another new room.
    """

    def __init__(self, settings: BudgetSettings, now: float) -> None:
        self._settings = settings
        self._global = _Level(settings.rooms_per_minute / 60.0, settings.burst + MAX_EXCESS, now)
        self._sources: OrderedDict[str, _Level] = OrderedDict()
        self._unshared = 0  # rooms charged since the last ``share``

    @property
    def settings(self) -> BudgetSettings:
        return self._settings

    def unshared(self) -> int:
        """The new rooms charged here since the last ``share``, for the shared level."""
        return self._unshared

    def share(self, level: float, counted: int, now: float) -> None:
        """Take the server-wide level of every process together (kept in Valkey, see
        securechat/valkey/presence.py), which counts ``counted`` of this process's
        rooms; any charged since are added on top."""
        self._unshared -= counted
        self._global.drain(now)  # from now on it drains from here
        self._global.value = min(self._global.cap, level + self._unshared)

    def bits(self, source: str | None, now: float) -> int:
        """The proof of work (in bits) a new room from ``source`` needs now; 0 is free."""
        needed = price(self._global.drain(now), self._settings.burst)
        if source is not None and (level := self._sources.get(source_key(source))) is not None:
            needed = max(needed, price(level.drain(now), self._settings.source_burst))
        return needed

    def charge(self, source: str | None, now: float) -> None:
        """Count one new room from ``source`` (made for free or with a proof)."""
        self._global.add(now)
        self._unshared += 1
        if source is None:
            return
        source = source_key(source)  # an IPv6 /64 is one source, as for connections
        level = self._sources.get(source)
        if level is None:
            level = _Level(
                self._settings.source_rooms_per_minute / 60.0,
                self._settings.source_burst + MAX_EXCESS,
                now,
            )
            self._sources[source] = level
            while len(self._sources) > self._settings.max_sources:
                self._sources.popitem(last=False)
        else:
            self._sources.move_to_end(source)
        level.add(now)

    def statistics(self, now: float) -> BudgetStatistics:
        return BudgetStatistics(
            level=self._global.drain(now), bits=self.bits(None, now), sources=len(self._sources)
        )
