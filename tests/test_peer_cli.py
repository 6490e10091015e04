"""``securechat new/chat/send/tail`` driven as a person or a script would: real
processes with piped stdin, against a real server, asserting on what they print."""

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final, TypeVar

import trio

from securechat.peer.events import ChatMessage, Cleared, Event, Presence, Profile
from securechat.peer.link import InviteLink, new_link, parse_link
from securechat.peer.session import Backoff, open_session
from securechat.protocol import ClientId
from tests.harness import ServerHandle, make_config, start_server

STEP: Final = 10.0  # seconds for one step that starts a Python process
ROOT: Final = Path(__file__).resolve().parent.parent
E = TypeVar("E", bound=Event)


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "securechat", *args]


async def run(
    env: dict[str, str], *args: str, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(STEP):
        return await trio.run_process(
            command(*args), stdin=stdin, capture_stdout=True, capture_stderr=True,
            check=False, env=env,
        )  # fmt: skip


class Lines:
    """Reads a process's output line by line, each read bounded in time."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""
        self.seen: list[str] = []

    async def next(self) -> str:
        with trio.fail_after(STEP):
            while b"\n" not in self._buffer:
                chunk = await self._stream.receive_some()
                if not chunk:
                    raise EOFError(f"the process ended; it printed {self.seen}")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        self.seen.append(line.decode())
        return self.seen[-1]

    async def until(self, *parts: str) -> str:
        """The next line containing every one of ``parts``."""
        while True:
            line = await self.next()
            if all(part in line for part in parts):
                return line


@asynccontextmanager
async def started(env: dict[str, str], *args: str) -> AsyncIterator[tuple[trio.Process, Lines]]:
    """A CLI process with piped stdin and stdout; killed on exit, whatever happened."""
    process = await trio.lowlevel.open_process(
        command(*args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        yield process, Lines(process.stdout)
    finally:
        process.kill()
        with trio.CancelScope(shield=True), trio.move_on_after(STEP):
            await process.wait()


async def type_line(process: trio.Process, text: str) -> None:
    assert process.stdin is not None
    await process.stdin.send_all(text.encode() + b"\n")


def one_line_error(result: subprocess.CompletedProcess[bytes]) -> str:
    err = result.stderr.decode()
    assert result.returncode == 1, result
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    assert err.startswith("securechat: error: ")
    return err


async def test_new_prints_a_link_for_the_server(env: dict[str, str]) -> None:
    result = await run(env, "new", "--server", "https://chat.example.org")
    assert result.returncode == 0
    link = parse_link(result.stdout.decode())
    assert link.base == "https://chat.example.org"
    assert len(link.secret) == 32


async def test_send_and_tail(server: ServerHandle, env: dict[str, str]) -> None:
    link = str(new_link(server.base))
    sent = await run(env, "send", link, "first, from argv", "--name", "Bob")
    assert (sent.returncode, sent.stdout, sent.stderr) == (0, b"", b"")
    piped = await run(env, "send", link, stdin=b"second\nline\n")
    assert piped.returncode == 0, piped

    async with started(env, "tail", link) as (_, lines):
        first, second = json.loads(await lines.next()), json.loads(await lines.next())
        assert (first["text"], first["name"], first["id"]) == ("first, from argv", "Bob", 1)
        # The identity (and name) is remembered per room in the state dir.
        assert (second["text"], second["name"], second["from"]) == (
            "second\nline",
            "Bob",
            first["from"],
        )
        assert set(first) == {"id", "from", "sentAt", "name", "text"}

        await run(env, "send", link, "live", "--client-id", "other01", "--name", "Eve")
        live = json.loads(await lines.next())
        assert (live["text"], live["from"], live["name"]) == ("live", "other01", "Eve")

    state = sorted((Path(env["XDG_STATE_HOME"]) / "securechat" / "rooms").iterdir())
    room_id = parse_link(link).room_id
    assert [path.name for path in state] == [f"{room_id}.send.json", f"{room_id}.tail.json"]
    for path in state:
        assert link.split("#")[1] not in path.read_text()  # never the secret


async def test_chat_as_a_person(server: ServerHandle, env: dict[str, str]) -> None:
    link = new_link(server.base)
    async with started(env, "chat", str(link), "--name", "Alice") as (alice, screen):
        line = await screen.until("* connected as")
        alice_id = line.split("connected as ")[1].split(";")[0]

        async with open_session(link, ClientId("bob0002"), name="Bob") as (bob, events):
            await screen.until("* bob0002 joined")
            await bob.send_text("hi Alice")
            assert (await first(events, ChatMessage)).own  # Bob's echo
            assert "Bob (bob0002): hi Alice" in await screen.until("hi Alice")

            await type_line(alice, "hello Bob")
            got = await first(events, ChatMessage)
            assert (got.text, got.name, got.sender) == ("hello Bob", "Alice", alice_id)
            assert "Alice (" in await screen.until("hello Bob", "(you)")

            await type_line(alice, "/clear")
            await screen.until("type y to confirm")
            await type_line(alice, "y")
            assert await first(events, Cleared) == Cleared(ClientId(alice_id))
            await screen.until("cleared by", alice_id)
        await screen.until("* Bob (bob0002) left")  # the name it sent

        await type_line(alice, "/quit")
        with trio.fail_after(STEP):
            assert await alice.wait() == 0


async def test_chat_learns_names_from_profiles_and_says_when_its_id_is_elsewhere(
    server: ServerHandle, env: dict[str, str]
) -> None:
    link = new_link(server.base)
    async with started(env, "chat", str(link)) as (bob, screen):
        line = await screen.until("* connected as")
        bob_id = line.split("connected as ")[1].split(";")[0]
        async with open_session(link, ClientId("alice01"), name="Alice", announce=True) as (
            _,
            events,
        ):
            await screen.until("* alice01 joined")
            # chat announces itself even without a name: a page shows no stale one.
            assert await first(events, Profile) == Profile(ClientId(bob_id), None)
        # Alice never wrote a word: her name came in her profile signal.
        await screen.until("* Alice (alice01) left")

        # The same identity in a second chat: the first one is told.
        async with started(env, "chat", str(link)) as (_, again):
            await again.until("* connected as", bob_id)
            await screen.until("* your id is also connected elsewhere")
        await type_line(bob, "/quit")
        with trio.fail_after(STEP):
            assert await bob.wait() == 0


async def test_chat_from_a_pipe_sends_every_line_then_exits(
    server: ServerHandle, env: dict[str, str]
) -> None:
    link = str(new_link(server.base))
    result = await run(env, "chat", link, stdin=b"one\ntwo\n")
    assert result.returncode == 0, result
    tail = await run(env, "send", link, "three")
    assert tail.returncode == 0
    async with started(env, "tail", link) as (_, lines):
        texts = [json.loads(await lines.next())["text"] for _ in range(3)]
    assert texts == ["one", "two", "three"]


async def test_wrong_key_is_one_clean_line(server: ServerHandle, env: dict[str, str]) -> None:
    link = new_link(server.base)
    assert (await run(env, "send", str(link), "claims the room")).returncode == 0
    impostor = InviteLink(link.base, link.room_id, os.urandom(32))
    for verb in ("send", "chat", "tail"):
        result = await run(env, verb, str(impostor), *(["x"] if verb == "send" else []))
        assert "wrong key" in one_line_error(result)


async def test_full_room_is_one_clean_line(
    nursery: trio.Nursery, tmp_path: Path, env: dict[str, str]
) -> None:
    server = await start_server(nursery, make_config(tmp_path / "data", max_participants=1))
    try:
        link = new_link(server.base)
        async with open_session(link, ClientId("holder1"), backoff=Backoff(0.05, 0.5)) as (
            _,
            events,
        ):
            await first(events, Presence)
            result = await run(env, "chat", str(link))
        assert "room is full" in one_line_error(result)
    finally:
        await server.stop()


async def test_bad_input_is_one_clean_line(env: dict[str, str]) -> None:
    link = str(new_link("http://127.0.0.1:9"))
    assert "no secret" in one_line_error(await run(env, "send", link.split("#")[0], "x"))
    assert "base64url" in one_line_error(await run(env, "tail", link[:-3] + "!!!"))
    assert "empty" in one_line_error(await run(env, "send", link, stdin=b"\n"))
    usage = await run(env, "chat", link, "--client-id", "no")
    assert usage.returncode == 2
    assert "Traceback" not in usage.stderr.decode()


async def test_send_reconnects_until_the_server_is_up(
    nursery: trio.Nursery, tmp_path: Path, env: dict[str, str]
) -> None:
    """A lost connection is retried: ``send`` to a server that starts late still works."""
    probe = await start_server(nursery, make_config(tmp_path / "data"))
    await probe.stop()  # a free port, now closed
    link = str(new_link(probe.base))
    async with started(env, "send", link, "eventually") as (sender, _):
        await trio.sleep(1.0)  # it is retrying now: connection refused
        server = await start_server(nursery, make_config(tmp_path / "data", port=probe.port))
        try:
            with trio.fail_after(STEP + 30):
                assert await sender.wait() == 0
        finally:
            await server.stop()


async def first(events: trio.MemoryReceiveChannel[Event], kind: type[E]) -> E:
    """The next event of ``kind``, skipping others."""
    with trio.fail_after(STEP):
        async for event in events:
            if isinstance(event, kind):
                return event
    raise AssertionError(f"the session ended before a {kind.__name__}")
