"""``GET /readyz``: ready while the storage answers, 503 while it does not.

The storage is made to stall for real: a reader outside the server holds an old
snapshot of the database (as a slow backup tool might), and a clear makes the
server truncate its WAL, which waits on the storage thread for that reader to
go (up to the thread's 5 s busy timeout). Loads queued behind it wait as long;
readiness says so.
"""

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import trio

from securechat.limits import READY_TIMEOUT_SECONDS
from securechat.protocol import ClientId, MessageOut, RoomId
from securechat.sqlite import DB_NAME, SqliteStorage
from securechat.storage import Append, Clear, SetVerifier
from tests.harness import ServerHandle, joined_peer, make_config, new_room_id, new_token
from tests.harness import start_server as start
from tests.test_http import assert_security_headers, http_get


@contextmanager
def old_snapshot(data_dir: Path) -> Iterator[None]:
    """Hold a read transaction on the database as it is now, until the block ends."""
    reader = sqlite3.connect(data_dir / DB_NAME, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM messages").fetchall()
        yield
    finally:
        reader.close()


async def test_readyz_answers_ready_with_every_security_header(server: ServerHandle) -> None:
    status, headers, body = await http_get(server, "/readyz")
    assert (status, body) == (200, b"ready")
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert_security_headers(headers)
    assert (await http_get(server, "/healthz"))[::2] == (200, b"ok")


async def test_readyz_of_an_ephemeral_server(nursery: trio.Nursery, tmp_path: Path) -> None:
    handle = await start(nursery, make_config(tmp_path / "data", ephemeral=True))
    assert (await http_get(handle, "/readyz"))[::2] == (200, b"ready")
    await handle.stop()


async def test_readyz_is_503_while_the_storage_stalls(server: ServerHandle) -> None:
    async with trio.open_nursery() as nursery:
        room, token = new_room_id(), new_token()
        peer = await joined_peer(nursery, server, room, token)
        await peer.post()
        await peer.expect("message")
        with old_snapshot(server.config.data_dir):
            await peer.post()  # a commit past the reader's snapshot
            await peer.expect("message")
            await peer.send({"type": "clear_history"})  # then a WAL truncation, which waits
            await peer.expect("history_cleared")
            with trio.fail_after(READY_TIMEOUT_SECONDS + 2):
                status, headers, body = await http_get(server, "/readyz")
            assert (status, body) == (503, b"not ready")
            assert_security_headers(headers)
            assert (await http_get(server, "/healthz"))[0] == 200  # alive all the same
        # The reader is gone: the truncation ends, and the storage answers again.
        with trio.fail_after(10):
            assert (await http_get(server, "/readyz"))[::2] == (200, b"ready")
        nursery.cancel_scope.cancel()


async def test_a_stalled_storage_owes_one_readiness_read_however_often_asked(
    tmp_path: Path,
) -> None:
    storage = SqliteStorage(tmp_path / "data")
    room = RoomId("r" * 22)

    def message(n: int) -> Append:
        sent = MessageOut(
            id=n, sender=ClientId("abcd1234"), sent_at=n, iv="A" * 16, ciphertext="B" * 24
        )
        return Append(sent, keep=10)

    try:
        await storage.write(room, [SetVerifier(b"v" * 32), message(1)], 1)
        with old_snapshot(tmp_path / "data"):
            await storage.write(room, [message(2)], 2)
            await storage.write(room, [Clear()], 3)  # queues the truncation, which waits
            answers: list[bool] = []

            async def ask() -> None:
                answers.append(await storage.answers(0.3))

            with trio.fail_after(2):
                async with trio.open_nursery() as askers:
                    for _ in range(50):
                        askers.start_soon(ask)
            assert answers == [False] * 50
            # Behind the truncation: one read, shared by all fifty.
            assert storage._thread._queue.qsize() == 1
            assert await storage.answers(0.3) is False
            assert storage._thread._queue.qsize() == 1
        with trio.fail_after(10):
            assert await storage.answers(8) is True
    finally:
        storage.close()
