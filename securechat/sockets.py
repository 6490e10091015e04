"""A plain TCP socket read and written with no more scheduler passes than needed.

Trio's ``SocketStream`` yields to the scheduler after every read or write that
did not have to wait, as a checkpoint; on the relay's hot path that is a pass of
the run loop (and an ``epoll_wait``) per frame. The transport boundary
(securechat/boundary.py) reads and writes a WebSocket's socket with these two
instead, and keeps the guarantees it relies on: a read that never had to wait
still yields, so a socket that never runs dry cannot keep other tasks from
running; a write never waits (what the kernel does not take, the caller keeps).
"""

import os

import trio

MAX_READ = 2**16  # bytes per read, as Hypercorn reads


async def receive(sock: trio.socket.SocketType) -> bytes:
    """What the socket has (b"" at its end), waiting for it if need be.

    Trio's ``receive_some`` yields to the scheduler after a read that found
    data, and again to wait when it found none: two passes for most messages.
    Here the wait is the only pass, unless the data was there at once, when
    this yields as Trio does, so a socket that never runs dry cannot keep
    other tasks from running.
    """
    waited = False
    while True:
        try:
            data = os.read(sock.fileno(), MAX_READ)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(sock)
            waited = True
            continue
        if not waited:
            await trio.lowlevel.checkpoint()
        return data


def send_nowait(sock: trio.socket.SocketType, data: bytes) -> int | None:
    """Write what the kernel takes of ``data`` now: the count, or None if it took nothing.

    A socket that is closed or broken takes everything (the count is the whole):
    its reader meets the same failure and ends the connection.
    """
    try:
        return os.write(sock.fileno(), data)
    except BlockingIOError:
        return None
    except OSError:
        return len(data)
