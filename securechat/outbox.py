"""A connection's outbox: frames written straight to its socket, or queued when it is busy.

Most of the time a socket's send buffer has room, and a frame the room relays
is handed to the kernel at once, from the room's own task, with no task switch,
lock or checkpoint: that is the hot path. When the socket cannot take a frame
now (a write is under way, or the kernel took only part of the last one), the
frame waits in a bounded queue and the connection's writer task sends it, in
order, with the server's send deadline. The room reads ``backlog`` to tell a
reader that keeps up from one that does not, exactly as it did when every frame
went through a queue.
"""

from typing import Final, Protocol, final

import trio

# The ASGI scope extension under which the server offers a ``FrameSink`` for an
# accepted WebSocket (securechat/boundary.py); without it frames go through ASGI.
FRAMES_EXTENSION: Final = "securechat.frames"


class FrameSink(Protocol):
    """The socket under one accepted WebSocket, taking whole frames (bytes on the wire)."""

    def write_nowait(self, frame: bytes) -> bool:
        """Take ``frame`` now without waiting, or return False having taken nothing.

        A frame the kernel takes only in part is still taken: the sink keeps the
        rest ahead of anything else and says so with ``holds_unsent`` until
        ``flush`` has written it. A sink whose socket is closing drops frames
        (returns True): nothing can be sent there any more.
        """
        ...

    @property
    def holds_unsent(self) -> bool: ...

    async def send(self, frame: bytes) -> None:
        """Write what the sink holds, then ``frame``, waiting for the socket."""
        ...

    async def flush(self) -> None: ...


@final
class Outbox:
    """The frames for one connection that its socket has not taken yet.

    Resource handling: at most ``limit`` frames wait (``put_nowait`` says when
    the next would not fit). A writer task is started in ``nursery`` only while
    frames wait or the sink owes the rest of one, and ends when they are sent:
    an idle connection has none. ``close`` takes no more frames; ``drained``
    waits for the writer to send what is queued. The room's unit tests give no
    sink and read the queue with ``take_nowait``.
    """

    __slots__ = (
        "_answers",
        "_closed",
        "_done",
        "_frames",
        "_limit",
        "_nursery",
        "_sink",
        "_writing",
    )

    def __init__(
        self, limit: int, sink: FrameSink | None = None, nursery: trio.Nursery | None = None
    ) -> None:
        self._limit = limit
        self._sink = sink
        self._nursery = nursery
        # (frame, is an answer); a list, not a deque: it is short and most often
        # empty, and an empty deque costs a 64-slot block per connection.
        self._frames: list[tuple[bytes, bool]] = []
        self._answers = 0  # answers among the queued frames
        self._writing = False  # a writer task is running
        self._done = trio.lowlevel.ParkingLot()  # woken when the writer ends
        self._closed = False

    @property
    def relayed(self) -> int:
        """Queued frames that the room relayed (not answers to the connection's own frames)."""
        return len(self._frames) - self._answers

    def put_nowait(self, frame: bytes, *, answer: bool = False) -> bool:
        """Send or queue ``frame``; False if the queue is full (nothing taken).

        After ``close`` frames are dropped: the connection is on its way out.
        """
        if self._closed:
            return True
        sink = self._sink
        if sink is not None and not self._frames and not self._writing and sink.write_nowait(frame):
            if sink.holds_unsent:
                self._start_writer()  # to send the rest
            return True
        if len(self._frames) >= self._limit:
            return False
        self._frames.append((frame, answer))
        self._answers += answer
        self._start_writer()
        return True

    def take_nowait(self) -> bytes | None:
        """The oldest queued frame, or None: for readers other than the writer (tests)."""
        if not self._frames:
            return None
        frame, answer = self._frames.pop(0)
        self._answers -= answer
        return frame

    def close(self) -> None:
        """Take no more frames; those queued are still sent."""
        self._closed = True

    async def drained(self) -> None:
        """Wait until the writer has sent what was queued (at once if none runs)."""
        if self._writing:
            await self._done.park()

    def _start_writer(self) -> None:
        if not self._writing and self._nursery is not None:
            self._writing = True
            self._nursery.start_soon(self._write)

    async def _write(self) -> None:
        """Send queued frames (and the sink's unsent rest) in order, then end.

        Error handling: whatever the sink raises ends this, and so the connection.
        """
        sink = self._sink
        assert sink is not None  # noqa: S101  (only the room's unit tests have none)
        try:
            while self._frames or sink.holds_unsent:
                frame = self.take_nowait()
                if frame is None:
                    await sink.flush()
                else:
                    await sink.send(frame)
                del frame  # not kept while the next write waits
        finally:
            self._writing = False
            self._done.unpark_all()
