"""A member: the room's handle on one connection.

The room writes frames into the member's bounded outbox without ever waiting (most
are written straight to the socket: see securechat/outbox.py). It watches how
many wait there: a congested member (``OUTBOX_HIGH_WATER`` frames the
room relayed, still unsent) makes the room refuse posts until it catches up, and a
full outbox evicts the member as a last resort. Frames that answer the member's own
frames (its refusals: ``rate_limited``, bad-frame errors) are ``Answer``s: they take
outbox space, so a member that never reads still fills its outbox and is evicted,
but they never make it congested, so they cannot pause the room. Eviction is
synchronous: it records the close code and cancels the connection's scope, whose
owner then closes the socket.
"""

from typing import TypeAlias, final

import trio

from securechat.counters import COUNTS
from securechat.errors import CloseCode
from securechat.frames import text_frame
from securechat.limits import OUTBOX_HIGH_WATER
from securechat.outbox import Outbox
from securechat.protocol import ClientId


@final
class Answer:
    """A frame sent to a member about its own frame (an ``error``), not relayed by the room."""

    __slots__ = ("frame",)

    def __init__(self, text: str) -> None:
        self.frame = text_frame(text)  # most answers are constants: framed once


Outgoing: TypeAlias = bytes | Answer  # a relayed frame (see securechat/frames.py), or an answer


@final
class Member:
    """One WebSocket connection as seen by the room that serves it.

    Resource handling: the connection task owns ``cancel_scope`` and runs the
    outbox's writer; the room only holds this handle.
    """

    __slots__ = ("_congested_since", "cancel_scope", "client_id", "close_code", "outbox")

    def __init__(self, client_id: ClientId, outbox: Outbox) -> None:
        self.client_id = client_id
        self.outbox = outbox
        self.cancel_scope = trio.CancelScope()
        self.close_code: CloseCode | None = None
        self._congested_since: int | None = None  # ms, on the room's clock

    @property
    def backlog(self) -> int:
        """Frames the room relayed to this connection that wait for its socket."""
        return self.outbox.relayed

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
        """Send or queue one frame; a member whose outbox is full is evicted as too slow."""
        if self.close_code is not None:
            return
        if isinstance(frame, Answer):
            taken = self.outbox.put_nowait(frame.frame, answer=True)
        else:
            taken = self.outbox.put_nowait(frame)
        if not taken:
            self.evict(CloseCode.TOO_SLOW)

    def evict(self, code: CloseCode) -> None:
        """Close this connection with ``code``. The first code given wins."""
        if self.close_code is None:
            self.close_code = code
            COUNTS.closes[code] += 1
        self.cancel_scope.cancel()

    def __repr__(self) -> str:
        return f"<Member {self.client_id} at {id(self):#x}>"
