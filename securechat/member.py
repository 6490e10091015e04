"""A member: the room's handle on one connection.

The room writes frames into the member's bounded outbox without ever waiting, and
evicts the member when the outbox is full. Eviction is synchronous: it records the
close code and cancels the connection's scope, whose owner then closes the socket.
"""

from typing import final

import trio

from securechat.errors import CloseCode
from securechat.protocol import ClientId


@final
class Member:
    """One WebSocket connection as seen by the room that serves it.

    Resource handling: the connection task owns ``cancel_scope`` and the outbox's
    receive side; the room only holds this handle.
    """

    __slots__ = ("_outbox", "cancel_scope", "client_id", "close_code")

    def __init__(self, client_id: ClientId, outbox: trio.MemorySendChannel[str]) -> None:
        self.client_id = client_id
        self._outbox = outbox
        self.cancel_scope = trio.CancelScope()
        self.close_code: CloseCode | None = None

    def deliver_nowait(self, text: str) -> None:
        """Queue one frame; a member that cannot take it is evicted as too slow."""
        if self.close_code is not None:
            return
        try:
            self._outbox.send_nowait(text)
        except trio.WouldBlock:
            self.evict(CloseCode.TOO_SLOW)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # The connection is already on its way out; it will leave by itself.
            pass

    def evict(self, code: CloseCode) -> None:
        """Close this connection with ``code``. The first code given wins."""
        if self.close_code is None:
            self.close_code = code
        self.cancel_scope.cancel()

    def __repr__(self) -> str:
        return f"<Member {self.client_id} at {id(self):#x}>"
