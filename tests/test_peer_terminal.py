"""The terminal client as a person and a script meet it: options in any order,
separate identities for scripts, the chat's commands, names in presence lines,
and one line from ``send`` when the server is gone. Real processes, real server."""

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from securechat.peer import arguments
from securechat.peer.display import MAX_KNOWN_NAMES, People
from securechat.peer.events import ChatMessage, Cleared, Event
from securechat.peer.link import DEFAULT_SERVER, new_link, parse_link
from securechat.peer.session import open_session
from securechat.protocol import ClientId
from tests.harness import ServerHandle, make_config, start_server
from tests.test_peer_cli import STEP, Lines, first, one_line_error, run, started, type_line


async def tail_texts(env: dict[str, str], link: str, count: int) -> list[dict[str, object]]:
    async with started(env, "tail", link, "--client-id", "reader1") as (_, lines):
        return [json.loads(await lines.next()) for _ in range(count)]


async def test_options_go_anywhere(server: ServerHandle, env: dict[str, str]) -> None:
    link = str(new_link(server.base))
    after = await run(env, "send", link, "--name", "Bot", "between")
    assert (after.returncode, after.stderr) == (0, b""), after
    before = await run(env, "send", "--name", "Bot", link, "before")
    assert before.returncode == 0, before
    got = await tail_texts(env, link, 2)
    assert [(m["name"], m["text"]) for m in got] == [("Bot", "between"), ("Bot", "before")]
    usage = await run(env, "tail", "--bogus", link)
    assert usage.returncode == 2  # still a usage error, not silently taken as LINK


async def test_send_and_tail_do_not_speak_as_the_chat(
    server: ServerHandle, env: dict[str, str]
) -> None:
    link = str(new_link(server.base))
    async with started(env, "chat", link, "--name", "Alice") as (alice, screen):
        connected = await screen.until("* connected as")
        alice_id = connected.split("connected as ")[1].split(";")[0]

        assert (await run(env, "send", link, "--name", "CI", "build green")).returncode == 0
        shown = await screen.until("build green")
        assert "CI (" in shown
        assert alice_id not in shown
        assert "(you)" not in shown

        # The chat's remembered name is still Alice, and its messages are still ours.
        await type_line(alice, "typed")
        assert "Alice (" in await screen.until("typed", "(you)")
        # Told to, a script may speak as the chat identity.
        assert (await run(env, "send", link, "--as-chat", "on my behalf")).returncode == 0
        shown = await screen.until("on my behalf")
        assert f"Alice ({alice_id}) (you)" in shown

    sender_ids = {m["from"] for m in await tail_texts(env, link, 3)}
    assert len(sender_ids) == 2


@asynccontextmanager
async def chat_as_alice(
    env: dict[str, str], link: str
) -> AsyncIterator[tuple[trio.Process, Lines, str]]:
    """``chat --name Alice``, connected; yields it, its screen and how it shows itself."""
    async with started(env, "chat", link, "--name", "Alice") as (alice, screen):
        connected = await screen.until("* connected as")
        alice_id = connected.split("connected as ")[1].split(";")[0]
        yield alice, screen, alice_id
        await type_line(alice, "/quit")
        with trio.fail_after(STEP):
            assert await alice.wait() == 0


async def test_chat_help_lists_the_commands(server: ServerHandle, env: dict[str, str]) -> None:
    async with chat_as_alice(env, str(new_link(server.base))) as (
        alice,
        screen,
        _,
    ):
        await type_line(alice, "/help")
        await screen.until("* /help")
        await screen.until("* /who")
        await screen.until("* /clear", "asks first")
        await screen.until("* /quit")


async def test_chat_clear_asks_first(server: ServerHandle, env: dict[str, str]) -> None:
    link = new_link(server.base)
    async with (
        chat_as_alice(env, str(link)) as (alice, screen, alice_id),
        open_session(link, ClientId("bob0002")) as (_, events),
    ):
        await screen.until("* bob0002 joined")
        await type_line(alice, "/clear")
        await screen.until("type y to confirm")
        await type_line(alice, "no")
        await screen.until("* the history was kept")
        await type_line(alice, "/clear")
        await screen.until("type y to confirm")
        await type_line(alice, "y")
        seen = await until_cleared(events)
        assert seen[-1] == Cleared(ClientId(alice_id))
        # "no" was an answer, not a message: Bob got nothing from Alice first.
        assert not any(isinstance(event, ChatMessage) for event in seen)
        await screen.until("cleared by")


async def test_chat_shows_names_and_marks_you(server: ServerHandle, env: dict[str, str]) -> None:
    link = new_link(server.base)
    async with chat_as_alice(env, str(link)) as (alice, screen, alice_id):
        me = f"Alice ({alice_id}) (you)"
        async with open_session(link, ClientId("bob0002"), name="Bob") as (bob, events):
            await screen.until("* bob0002 joined")  # no name known yet
            await bob.send_text("hi, I am Bob")
            assert (await first(events, ChatMessage)).own
            await screen.until("hi, I am Bob")

            await type_line(alice, "/who")
            who = await screen.until("* here:")
            assert me in who
            assert "Bob (bob0002)" in who

            await type_line(alice, "/clear")
            await type_line(alice, "y")
            assert me in await screen.until("cleared by")
        assert "* Bob (bob0002) left" in await screen.until("left")


async def until_cleared(events: trio.MemoryReceiveChannel[Event]) -> list[Event]:
    """Every event up to and including the next ``Cleared``."""
    seen: list[Event] = []
    with trio.fail_after(STEP):
        async for event in events:
            seen.append(event)
            if isinstance(event, Cleared):
                return seen
    raise AssertionError(f"the session ended before the clear; it saw {seen}")


async def test_new_says_which_server_it_used(env: dict[str, str]) -> None:
    result = await run(env, "new")
    assert result.returncode == 0
    assert parse_link(result.stdout.decode()).base == DEFAULT_SERVER  # stdout: the link only
    note = result.stderr.decode()
    assert note.count("\n") == 1
    assert DEFAULT_SERVER in note
    assert "--server" in note
    given = await run(env, "new", "--server", "https://chat.example.org")
    assert (given.returncode, given.stderr) == (0, b"")


async def test_send_to_a_dead_server_is_one_line_within_its_timeout(
    nursery: trio.Nursery, tmp_path: Path, env: dict[str, str]
) -> None:
    probe = await start_server(nursery, make_config(tmp_path / "data"))
    await probe.stop()  # a free port, now closed
    link = str(new_link(probe.base))
    began = time.monotonic()
    result = await run(env, "send", link, "--timeout", "1.5", "into the void")
    elapsed = time.monotonic() - began
    err = one_line_error(result)  # exactly one line, no retry chatter
    assert "not delivered within 1.5 s" in err
    assert 1.5 <= elapsed < STEP
    assert arguments.SEND_SECONDS == 10.0  # the default: a script does not hang for long
    bad = await run(env, "send", link, "--timeout", "0", "x")
    assert bad.returncode == 2


def test_names_learnt_are_bounded_cleaned_and_never_ours() -> None:
    people = People("me0001", "Me")

    def said(sender: str, name: str) -> ChatMessage:
        return ChatMessage(1, ClientId(sender), 0, "x", "m", 0, name, own=False, from_history=False)

    people.learn(said("me0001", "Impostor"))  # the server cannot rename us
    assert people.label("me0001") == "Me (me0001) (you)"
    people.learn(said("evil01", "\x1b]0;title\x07Eve"))
    assert "\x1b" not in people.label("evil01")
    for number in range(MAX_KNOWN_NAMES + 1):
        people.learn(said(f"peer{number:04d}", f"P{number}"))
    assert people.label("evil01") == "evil01"  # the oldest is forgotten
    assert (
        people.label(f"peer{MAX_KNOWN_NAMES:04d}")
        == f"P{MAX_KNOWN_NAMES} (peer{MAX_KNOWN_NAMES:04d})"
    )
