"""The outbox over a scripted socket: what goes straight out, what waits, in what order.

The real socket's side (partial writes, pings between frames, a reader that
stops) is tested against the real server in tests/test_relay_writes.py.
"""

import trio
import trio.testing

from securechat.outbox import Outbox


class Socket:
    """A socket that takes ``room`` bytes without waiting; ``send`` waits until opened."""

    def __init__(self, room: int = 1 << 20) -> None:
        self.room = room
        self.wire = b""
        self.unsent = b""
        self.open = trio.Event()
        self.open.set()

    @property
    def holds_unsent(self) -> bool:
        return bool(self.unsent)

    def write_nowait(self, frame: bytes) -> bool:
        if self.unsent or not self.room:
            return False
        taken = frame[: self.room]
        self.room -= len(taken)
        self.wire += taken
        self.unsent = frame[len(taken) :]
        return True

    async def send(self, frame: bytes) -> None:
        await self.open.wait()
        self.wire += self.unsent + frame
        self.unsent = b""

    async def flush(self) -> None:
        await self.send(b"")


async def test_frames_go_straight_out_while_the_socket_takes_them() -> None:
    socket = Socket()
    outbox = Outbox(4, socket)
    for frame in (b"one", b"two", b"three"):
        assert outbox.put_nowait(frame)
    assert socket.wire == b"onetwothree"
    assert outbox.relayed == 0  # nothing waits: the room sees no backlog


async def test_what_waits_goes_out_in_order_after_the_rest_of_a_partial_frame(
    nursery: trio.Nursery,
) -> None:
    socket = Socket(room=4)
    socket.open = trio.Event()  # the writer's sends wait until the test opens it
    outbox = Outbox(4, socket, nursery)
    assert outbox.put_nowait(b"first!")  # the kernel takes "firs"; the rest is owed
    assert socket.wire == b"firs"
    assert socket.holds_unsent
    assert outbox.put_nowait(b"second")
    assert outbox.put_nowait(b"third", answer=True)
    assert outbox.relayed == 1  # an answer never counts as backlog
    socket.open.set()
    await trio.testing.wait_all_tasks_blocked()
    assert socket.wire == b"first!secondthird"
    assert outbox.relayed == 0
    assert not socket.holds_unsent


async def test_a_full_queue_takes_nothing_more() -> None:
    outbox = Outbox(2, Socket(room=0))
    assert outbox.put_nowait(b"a")
    assert outbox.put_nowait(b"b")
    assert not outbox.put_nowait(b"c")
    assert outbox.take_nowait() == b"a"


async def test_a_frame_never_overtakes_one_on_its_way(nursery: trio.Nursery) -> None:
    socket = Socket(room=0)
    socket.open = trio.Event()
    outbox = Outbox(4, socket, nursery)
    outbox.put_nowait(b"a")
    await trio.testing.wait_all_tasks_blocked()  # the writer took "a" and waits on the socket
    socket.room = 100  # the kernel has room again, but "a" is not written yet
    assert outbox.put_nowait(b"b")
    assert socket.wire == b""  # "b" waits behind "a"
    socket.open.set()
    await trio.testing.wait_all_tasks_blocked()
    assert socket.wire == b"ab"


async def test_close_sends_what_is_queued_then_drops_the_rest(nursery: trio.Nursery) -> None:
    socket = Socket(room=0)
    socket.open = trio.Event()
    outbox = Outbox(4, socket, nursery)
    outbox.put_nowait(b"last words")
    outbox.close()
    assert outbox.put_nowait(b"too late")  # taken, and dropped
    socket.open.set()
    with trio.fail_after(1):
        await outbox.drained()
    assert socket.wire == b"last words"


async def test_an_idle_outbox_has_no_writer_task(nursery: trio.Nursery) -> None:
    socket = Socket(room=3)
    outbox = Outbox(4, socket, nursery)
    outbox.put_nowait(b"abcdef")  # "def" is owed: a writer starts, sends it, and ends
    await trio.testing.wait_all_tasks_blocked()
    assert socket.wire == b"abcdef"
    assert nursery.child_tasks == set()
    with trio.fail_after(1):
        await outbox.drained()  # at once
