"""The Python client creates a room on a busy server: it solves the challenge by itself."""

from pathlib import Path

import trio

from securechat.budget import BASE_BITS
from securechat.peer.events import Challenged, ChatMessage, Presence
from securechat.peer.link import new_link
from securechat.peer.session import open_session
from securechat.protocol import ClientId
from tests.harness import (
    WAIT,
    ServerHandle,
    joined_peer,
    make_config,
    new_room_id,
    new_token,
    start_server,
)
from tests.test_peer_cli import run
from tests.test_peer_session import FAST, until


async def busy_server(nursery: trio.Nursery, tmp_path: Path) -> ServerHandle:
    server = await start_server(
        nursery, make_config(tmp_path / "data", new_rooms_per_minute=0.01, new_rooms_burst=1)
    )
    await joined_peer(nursery, server, new_room_id(), new_token())  # spends the burst
    return server


async def test_a_session_creates_a_room_under_pressure(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = await busy_server(nursery, tmp_path)
    link = new_link(server.base)
    async with open_session(link, ClientId("alice01"), backoff=FAST) as (session, events):
        challenged = await until(events, Challenged)
        assert challenged.bits == BASE_BITS
        await until(events, Presence, lambda e: e.event == "connected")
        mid = await session.send_text("paid for")
        echo = await until(events, ChatMessage)
        assert (echo.mid, echo.text, echo.own) == (mid, "paid for", True)
    # Back in the room it made: it exists now, so no challenge.
    async with open_session(link, ClientId("alice01"), backoff=FAST) as (_, events):
        with trio.fail_after(WAIT):
            async for event in events:
                assert not isinstance(event, Challenged)
                if isinstance(event, Presence) and event.event == "connected":
                    break
    await server.stop()


async def test_send_says_it_is_securing_the_room_on_stderr(
    nursery: trio.Nursery, tmp_path: Path, env: dict[str, str]
) -> None:
    server = await busy_server(nursery, tmp_path)
    sent = await run(env, "send", str(new_link(server.base)), "hello")
    assert (sent.returncode, sent.stdout) == (0, b"")
    assert sent.stderr.decode() == "securechat: securing the room…\n"
    await server.stop()
