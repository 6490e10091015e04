"""The reference client's session against a real server: join, relay, history, clear,
wrong key, room full, unreadable messages, and reconnection across a server restart."""

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Final, TypeVar

import pytest
import trio

from securechat.peer import session as session_module
from securechat.peer.display import People
from securechat.peer.events import (
    ChatMessage,
    Cleared,
    Disconnected,
    Event,
    Presence,
    Profile,
    ServerError,
    Stopped,
    Unreadable,
)
from securechat.peer.keys import Plaintext, RoomKeys
from securechat.peer.link import InviteLink, new_link
from securechat.peer.session import Backoff, Session, open_session
from securechat.protocol import ClientId
from tests.harness import WAIT, ServerHandle, joined_peer, make_config, start_server

FAST: Final = Backoff(first=0.05, limit=0.5)  # reconnect quickly in tests
E = TypeVar("E", bound=Event)

Events = trio.MemoryReceiveChannel[Event]


@asynccontextmanager
async def joined(
    link: InviteLink, client_id: str, name: str | None = None, *, announce: bool = False
) -> AsyncIterator[tuple[Session, Events]]:
    """A session that has received its ``connected``."""
    async with open_session(
        link, ClientId(client_id), name=name, announce=announce, backoff=FAST
    ) as (s, events):
        await until(events, Presence, lambda e: e.event == "connected")
        yield s, events


async def until(events: Events, kind: type[E], matches: Callable[[E], bool] = lambda _: True) -> E:
    """The next event of ``kind`` that ``matches``, skipping others (within WAIT)."""
    with trio.fail_after(WAIT):
        async for event in events:
            if isinstance(event, kind) and matches(event):
                return event
    raise AssertionError(f"the session ended before a {kind.__name__}")


def room(server: ServerHandle) -> InviteLink:
    return new_link(server.base)


async def test_two_sessions_exchange_messages_with_names(server: ServerHandle) -> None:
    link = room(server)
    async with joined(link, "alice01", "Alice") as (alice, alice_events):
        async with joined(link, "bob0002", "Bob") as (_, bob_events):
            joined_event = await until(alice_events, Presence, lambda e: e.event == "joined")
            assert joined_event.client_id == "bob0002"
            assert set(joined_event.participants) == {"alice01", "bob0002"}

            mid = await alice.send_text("hello, Bob")
            got = await until(bob_events, ChatMessage)
            assert (got.text, got.name, got.sender, got.mid, got.own) == (
                "hello, Bob", "Alice", "alice01", mid, False,
            )  # fmt: skip
            echo = await until(alice_events, ChatMessage)
            assert echo.own
            assert echo.id == got.id
            assert alice.conversation.pending == 0
        left = await until(alice_events, Presence, lambda e: e.event == "left")
        assert left.client_id == "bob0002"


async def test_a_profile_names_people_before_anyone_speaks(server: ServerHandle) -> None:
    link = room(server)
    people = People("bob0002")
    async with joined(link, "alice01", "Alice", announce=True) as (_, alice_events):
        # Bob, like ``tail`` without a name, says nothing of himself.
        async with joined(link, "bob0002") as (bob, bob_events):
            # Alice heard bob join and told him who she is: no message yet.
            profile = await until(bob_events, Profile)
            assert profile == Profile(ClientId("alice01"), "Alice")
            people.learn(profile)
            assert people.label("alice01") == "Alice (alice01)"
            await until(alice_events, Presence, lambda e: e.event == "joined")
            await bob.send_text("hi")
            # Bob announced nothing: his message is the next thing Alice hears.
            with trio.fail_after(WAIT):
                got = await alice_events.receive()
                while not isinstance(got, ChatMessage | Profile):
                    got = await alice_events.receive()
            assert isinstance(got, ChatMessage)
            assert got.text == "hi"

        # The other way round: a newcomer that announces itself on connecting.
        async with (
            joined(link, "carol03") as (_, carol_events),
            joined(link, "dave004", "Dave", announce=True),
        ):
            await until(carol_events, Presence, lambda e: e.event == "joined")
            dave = await until(carol_events, Profile, lambda e: e.client_id == "dave004")
            assert dave.name == "Dave"


async def test_history_is_delivered_in_order_on_join(server: ServerHandle) -> None:
    link = room(server)
    async with joined(link, "alice01") as (alice, _):
        for text in ("one", "two", "three"):
            await alice.send_text(text)
        with trio.fail_after(WAIT):
            await alice.wait_all_echoed()
    async with open_session(link, ClientId("carol03"), backoff=FAST) as (_, events):
        got = [await until(events, ChatMessage) for _ in range(3)]
    assert [m.text for m in got] == ["one", "two", "three"]
    assert all(m.from_history for m in got)
    assert [m.id for m in got] == sorted(m.id for m in got)


async def test_clear_history_reaches_everyone(server: ServerHandle) -> None:
    link = room(server)
    async with joined(link, "alice01") as (alice, alice_events):
        await alice.send_text("soon gone")
        await until(alice_events, ChatMessage)
        async with joined(link, "bob0002") as (_, bob_events):
            await alice.clear_history()
            assert await until(bob_events, Cleared) == Cleared(ClientId("alice01"))
            assert await until(alice_events, Cleared) == Cleared(ClientId("alice01"))
    async with open_session(link, ClientId("carol03"), backoff=FAST) as (_, events):
        first = await until(events, Presence)  # nothing from the history before it
    assert first.event == "connected"


async def test_wrong_key_stops_with_a_clear_reason(server: ServerHandle) -> None:
    link = room(server)
    async with joined(link, "alice01"):
        impostor = InviteLink(link.base, link.room_id, os.urandom(32))
        async with open_session(impostor, ClientId("mallory"), backoff=FAST) as (_, events):
            stopped = await until(events, Stopped)
            with trio.fail_after(WAIT):
                assert [e async for e in events] == []  # the channel closes: no retry
    assert stopped.code == 4401
    assert "wrong key" in stopped.reason


async def test_full_room_stops_with_a_clear_reason(nursery: trio.Nursery, tmp_path: Path) -> None:
    server = await start_server(nursery, make_config(tmp_path / "data", max_participants=1))
    try:
        link = room(server)
        async with (
            joined(link, "alice01"),
            open_session(link, ClientId("bob0002"), backoff=FAST) as (_, events),
        ):
            stopped = await until(events, Stopped)
        assert stopped.code == 4409
        assert "full" in stopped.reason
    finally:
        await server.stop()


async def test_a_message_that_does_not_decrypt_is_shown_as_unreadable(
    nursery: trio.Nursery, server: ServerHandle
) -> None:
    link = room(server)
    keys = RoomKeys(link.secret, link.room_id)
    async with joined(link, "alice01") as (alice, events):
        raw = await joined_peer(nursery, server, link.room_id, keys.auth, "rawpeer")
        await raw.post()  # random bytes: right shape, no valid tag
        unreadable = await until(events, Unreadable)
        assert unreadable.sender == "rawpeer"
        # A well-formed message relayed twice (say, a resend after a lost echo) shows once.
        sealed = keys.seal(Plaintext(text="once", mid="same-mid", ts=1), ClientId("rawpeer"))
        envelope = {"type": "message", "iv": sealed.iv, "ciphertext": sealed.ciphertext}
        await raw.send(envelope)
        await raw.send(envelope)
        assert (await until(events, ChatMessage)).text == "once"
        await alice.send_text("still fine")
        assert (await until(events, ChatMessage)).text == "still fine"  # not "once" again


async def test_reconnects_after_a_server_restart_and_sends_what_was_pending(
    nursery: trio.Nursery, server: ServerHandle
) -> None:
    link = room(server)
    async with joined(link, "alice01", "Alice") as (alice, events):
        await alice.send_text("before")
        await until(events, ChatMessage)
        await server.stop()
        lost = await until(events, Disconnected)
        assert lost.code == 1001
        mid = await alice.send_text("while away")  # pending until the next hello
        # Same port, same data dir: what ServerHandle.restart does, split in two.
        server = await start_server(nursery, replace(server.config, port=server.port))
        try:
            await until(events, Presence, lambda e: e.event == "connected")
            echo = await until(events, ChatMessage)
            assert (echo.text, echo.mid, echo.own) == ("while away", mid, True)
            assert alice.is_connected
        finally:
            await server.stop()


async def test_a_burst_of_refusals_schedules_one_resend_of_what_is_pending(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No resend comes due during the test, so every one scheduled is still counted.
    monkeypatch.setattr(session_module, "RATE_RETRY_SECONDS", 60.0)
    scheduled = 0
    resend_later = Session._resend_later

    async def counting(self: Session, ws: object) -> None:
        nonlocal scheduled
        scheduled += 1
        await resend_later(self, ws)  # type: ignore[arg-type]

    monkeypatch.setattr(Session, "_resend_later", counting)
    server = await start_server(nursery, make_config(tmp_path / "data", rate=0.01, burst=1))
    try:
        async with joined(room(server), "alice01") as (alice, events):
            for n in range(4):
                await alice.send_text(f"message {n}")
            for _ in range(3):  # the burst of 1 lets the first through
                assert (await until(events, ServerError)).code == "rate_limited"
            assert scheduled == 1
    finally:
        await server.stop()


async def test_a_full_storage_stops_a_new_room_with_a_clear_reason(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = await start_server(nursery, make_config(tmp_path / "data", max_stored_rooms=1))
    try:
        async with joined(room(server), "alice01"):
            pass  # the one room the quota holds
        async with open_session(room(server), ClientId("bob0002"), backoff=FAST) as (_, events):
            stopped = await until(events, Stopped)
        assert stopped.code == 4507
        assert "storage is full" in stopped.reason
    finally:
        await server.stop()
