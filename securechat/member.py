"""A member: the room's handle on one connection.

The room writes frames into the member's bounded outbox without ever waiting. It
watches how full the outbox is: a congested member (``OUTBOX_HIGH_WATER`` frames the
room relayed, still unsent) makes the room refuse posts until it catches up, and a
full outbox evicts the member as a last resort. Frames that answer the member's own
frames (its refusals: ``rate_limited``, bad-frame errors) are ``Answer``s: they take
outbox space, so a member that never reads still fills its outbox and is evicted,
but they never make it congested, so they cannot pause the room. Eviction is
synchronous: it records the close code and cancels the connection's scope, whose
owner then closes the socket.
"""

from dataclasses import dataclass
from typing import TypeAlias, final

import trio

from securechat.counters import COUNTS
from securechat.errors import CloseCode
from securechat.limits import OUTBOX_HIGH_WATER
from securechat.protocol import ClientId


@final
@dataclass(frozen=True, slots=True)
class Answer:
    """A frame sent to a member about its own frame (an ``error``), not relayed by the room."""

    text: str


Outgoing: TypeAlias = str | Answer  # what an outbox holds: relayed text, or an answer


@final
class Member:
    """One WebSocket connection as seen by the room that serves it.

    Resource handling: the connection task owns ``cancel_scope`` and the outbox's
    receive side, and calls ``answer_taken`` for each ``Answer`` it takes out; the
    room only holds this handle.
    """

    __slots__ = (
        "_answers",
        "_congested_since",
        "_outbox",
        "cancel_scope",
        "client_id",
        "close_code",
    )

    def __init__(self, client_id: ClientId, outbox: trio.MemorySendChannel[Outgoing]) -> None:
        self.client_id = client_id
        self._outbox = outbox
        self.cancel_scope = trio.CancelScope()
        self.close_code: CloseCode | None = None
        self._congested_since: int | None = None  # ms, on the room's clock
        self._answers = 0  # ``Answer``s in the outbox

    @property
    def backlog(self) -> int:
        """Frames the room relayed to this connection that its pump has not sent yet."""
        return self._outbox.statistics().current_buffer_used - self._answers

    def congested_since(self, now_ms: int, queued: int) -> int | None:
        """When this member's backlog reached ``OUTBOX_HIGH_WATER``, or None if it is below.

        Only the room calls this, with its own clock, each time it decides whether to
        take a post; ``queued`` counts the frames it has decided to relay to this
        member but not delivered yet. The member counts as congested from the first
        call that finds it at high water until a call finds it below, so a reader that
        keeps draining is told apart from one that has stopped. An evicted member is
        never congested: it is on its way out and must not hold the room up.
        """
        if self.close_code is not None or self.backlog + queued < OUTBOX_HIGH_WATER:
            self._congested_since = None
        elif self._congested_since is None:
            self._congested_since = now_ms
        return self._congested_since

    def deliver_nowait(self, frame: Outgoing) -> None:
        """Queue one frame; a member whose outbox is full is evicted as too slow."""
        if self.close_code is not None:
            return
        try:
            self._outbox.send_nowait(frame)
        except trio.WouldBlock:
            self.evict(CloseCode.TOO_SLOW)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # The connection is already on its way out; it will leave by itself.
            pass
        else:
            if isinstance(frame, Answer):
                self._answers += 1

    def answer_taken(self) -> None:
        """The connection took one ``Answer`` out of the outbox (no checkpoint in between)."""
        self._answers -= 1

    def evict(self, code: CloseCode) -> None:
        """Close this connection with ``code``. The first code given wins."""
        if self.close_code is None:
            self.close_code = code
            COUNTS.closes[code] += 1
        self.cancel_scope.cancel()

    def __repr__(self) -> str:
        return f"<Member {self.client_id} at {id(self):#x}>"
