"""``chat`` on a real terminal (a pty): what arrives while a line is half typed
is printed above it, and the typed line survives; a line sent shows once."""

import os
import pty
import subprocess

import trio

from securechat.peer.events import ChatMessage
from securechat.peer.link import new_link
from securechat.peer.session import open_session
from securechat.protocol import ClientId
from tests.harness import ServerHandle
from tests.test_peer_cli import STEP, command, first

ERASE_LINE = "\r\x1b[2K"


def rendered(output: str) -> list[str]:
    """The lines a terminal would show for ``output`` (the escapes ``chat`` uses)."""
    lines = [""]
    for part in output.replace("\r\n", "\n").split(ERASE_LINE):
        lines[-1] = ""  # the line was erased (a no-op for the very first part)
        for number, piece in enumerate(part.split("\n")):
            if number:
                lines.append("")
            lines[-1] += piece
    return lines


class Terminal:
    def __init__(self, master: int) -> None:
        self.stream = trio.lowlevel.FdStream(master)
        self.output = ""

    async def type(self, keys: str) -> None:
        await self.stream.send_all(keys.encode())

    async def until(self, text: str, *, last: str | None = None) -> list[str]:
        """Read until the screen has a line containing ``text`` (and ends in ``last``)."""
        with trio.fail_after(STEP):
            while True:
                screen = rendered(self.output)
                if any(text in shown for shown in screen) and last in (None, screen[-1]):
                    return screen
                self.output += (await self.stream.receive_some()).decode(errors="replace")


async def test_incoming_lines_keep_the_half_typed_line(
    server: ServerHandle, env: dict[str, str]
) -> None:
    link = new_link(server.base)
    master, slave = pty.openpty()
    process = await trio.lowlevel.open_process(
        command("chat", str(link), "--name", "Alice"), stdin=slave, stdout=slave,
        stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    os.close(slave)
    terminal = Terminal(master)
    try:
        await terminal.until("* connected as")
        async with open_session(link, ClientId("bob0002"), name="Bob") as (bob, events):
            await terminal.until("bob0002 joined")
            await terminal.type("hel")
            await terminal.until("> hel")
            await bob.send_text("incoming")
            # The message sits above the input line, which still holds "hel".
            screen = await terminal.until("incoming", last="> hel")
            assert not any("hel" in shown and "incoming" in shown for shown in screen)

            await terminal.type("\x7flo\r")  # Backspace, then "lo": "helo"
            got = await first(events, ChatMessage)
            while got.own:
                got = await first(events, ChatMessage)
            assert got.text == "helo"
            screen = await terminal.until("(you): helo", last="> ")
            assert [shown for shown in screen if "helo" in shown] == [
                next(shown for shown in screen if "(you): helo" in shown)
            ], screen  # the typed line is gone; only the echo stays
        await terminal.type("\x04")  # Ctrl-D on an empty line: the end
        with trio.fail_after(STEP):
            assert await process.wait() == 0
    finally:
        process.kill()
        with trio.CancelScope(shield=True), trio.move_on_after(STEP):
            await process.wait()
        await terminal.stream.aclose()
