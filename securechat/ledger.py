"""A room's bookkeeping for storage (sans-IO): what its history costs, and how it is used.

``HistoryLedger`` keeps the stored size of each message of a room's history, not
the messages, and decides what a new message displaces under the history cap and
the storage quota. ``Lifecycle`` turns admitted joins into the writes that decide
how long storage keeps the room: confirmation by a second clientId, and a mark of
activity at most once per ``ACTIVE_MARK_SECONDS``.
"""

from collections import deque
from typing import final

from securechat.limits import ACTIVE_MARK_SECONDS
from securechat.protocol import ClientId
from securechat.storage import Confirm, Quota, RoomRecord, Touch, Write


@final
class HistoryLedger:
    """The stored sizes of one room's messages, oldest first, under a cap and a quota."""

    __slots__ = ("_cap", "_quota", "sizes")

    def __init__(self, record: RoomRecord, cap: int, quota: Quota) -> None:
        self._cap = cap
        self._quota = quota
        self.sizes: deque[int] = deque(record.sizes[-cap:] if cap else (), maxlen=cap)

    def make_room(self, size: int, pending: int) -> tuple[int, int] | None:
        """Make room for a message of ``size`` stored bytes.

        ``pending`` is what the batch's earlier writes add to storage. Return how
        many messages the room keeps with the new one (the ``Append``'s ``keep``)
        and the bytes storage grows by, or None if it cannot be stored. Normally the
        cap drops the oldest message; when the new one would take storage to its
        quota, the room's own older messages make room for it, oldest first, so
        existing rooms keep working at the quota while the total cannot grow.
        """
        if self._cap == 0:
            return 0, 0  # stored and deleted in the same commit: it costs nothing
        sizes = self.sizes
        kept = min(len(sizes), self._cap - 1)  # older messages that stay
        freed = sum(sizes[i] for i in range(len(sizes) - kept))
        while kept and self._quota.bytes_full(pending + size - freed):
            freed += sizes[len(sizes) - kept]
            kept -= 1
        if self._quota.bytes_full(pending + size - freed) and freed < size:
            return None  # over the quota even alone, and it would grow the total
        for _ in range(len(sizes) - kept):
            sizes.popleft()
        sizes.append(size)
        return kept + 1, size - freed

    def clear(self) -> int:
        """Forget every message; return the stored bytes that frees."""
        freed = sum(self.sizes)
        self.sizes.clear()
        return freed


@final
class Lifecycle:
    """Whether a room is in use, as its admitted joins show it."""

    __slots__ = ("_creator", "_last_active", "_revive", "confirmed")

    def __init__(self, record: RoomRecord) -> None:
        self.confirmed = record.confirmed
        self._creator = record.creator
        self._last_active = record.last_active  # ms, as storage last marked it
        self._revive = record.swept  # a tombstone: the first admitted join marks it active

    def created(self, creator: ClientId) -> None:
        self._creator = creator

    def joined(self, client_id: ClientId, now_ms: int, writes: list[Write]) -> None:
        """Add what an admitted join says about the room to this batch's ``writes``."""
        if not self.confirmed:
            if self._creator is None:
                self._creator = client_id
            elif client_id != self._creator:
                self.confirmed, self._creator = True, None
                writes.append(Confirm())
        # Joins keep a room from expiring too, but write that at most once per interval.
        stale = now_ms - self._last_active >= ACTIVE_MARK_SECONDS * 1000
        if not writes and (self._revive or stale):
            writes.append(Touch())

    def written(self, now_ms: int) -> None:
        """The batch writes: every write marks the room active and revives a tombstone."""
        self._last_active, self._revive = now_ms, False
