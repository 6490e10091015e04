"""People in a real Chromium: names from the first minute, "You" only for what this
browser sent, folded joined/left lines, and the typing indicator.

Two browser contexts are two people; a protocol peer from tests/harness.py (with the
Python client's RoomKeys) is a third person, or someone else using our clientId.
Every scenario ends with no CSP or Trusted Types violation and no console error.
"""

import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import pytest
import trio
from playwright.sync_api import Page, expect

from securechat.peer.keys import Plaintext, RoomKeys, new_mid
from securechat.peer.link import parse_link
from securechat.protocol import ClientId
from tests.browser import Session, require_chromium, run_in_browser
from tests.harness import Peer, ServerHandle, connect, make_config, start_server
from tests.test_browser import create_room, join, say, set_name, stored_record, texts
from tests.test_peer_cli import run

pytestmark = pytest.mark.slow

PROMPT: Final = "What should others here call you?"
PHONE: Final = {"width": 390, "height": 844}
QUICK_MS: Final = 2_000  # "at once": well before the 6 s a typing notice lasts by itself
VECTORS: Final = json.loads(Path(__file__).with_name("vectors.json").read_text(encoding="utf-8"))


@pytest.fixture
async def server(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[ServerHandle]:
    require_chromium()
    handle = await start_server(nursery, make_config(tmp_path / "data"))
    yield handle
    await handle.stop()


def people_names(page: Page) -> list[str]:
    """The people list's entries, read from the DOM (the popover may be closed)."""
    names: list[str] = page.locator(".people-list li").evaluate_all(
        "items => items.map(li => li.textContent)"
    )
    return names


def system_lines(page: Page) -> list[str]:
    lines: list[str] = page.locator(".messages .system").evaluate_all(
        "items => items.map(li => li.textContent)"
    )
    return lines


def signals_sent(session: Session, page: Page) -> int:
    return sum('"type":"signal"' in frame for frame in session.log(page).frames_sent)


def check_signal_vector(page: Page) -> None:
    """signals.js reproduces docs/protocol.md's profile signal, which never opens as a message."""
    result: dict[str, Any] = page.evaluate(
        """async (v) => {
          const c = await import("/crypto.js");
          const s = await import("/signals.js");
          const { key } = await c.deriveRoomKeys(c.b64urlDecode(v.secret), v.roomId);
          const g = v.signal;
          const m = v.message;
          const body = JSON.parse(g.plaintext);
          const sealed = await s.sealSignal(key, v.roomId, g.clientId, body, c.b64urlDecode(g.iv));
          return {
            sealed,
            opened: await s.openSignal(key, v.roomId, g.clientId, g.iv, g.ciphertext),
            otherSender: await s.openSignal(key, v.roomId, "mallory", g.iv, g.ciphertext),
            asMessage: await c.openMessage(key, v.roomId, g.clientId, g.iv, g.ciphertext),
            messageAsSignal: await s.openSignal(key, v.roomId, m.clientId, m.iv, m.ciphertext),
          };
        }""",
        VECTORS,
    )
    vector = VECTORS["signal"]
    assert result["sealed"] == {
        "type": "signal",
        "iv": vector["iv"],
        "ciphertext": vector["ciphertext"],
    }
    assert result["opened"] == json.loads(vector["plaintext"])
    assert result["otherSender"] is None
    assert result["asMessage"] is None
    assert result["messageAsSignal"] is None


class ThirdPerson:
    """A protocol peer in the room (driven from the browser thread into Trio)."""

    def __init__(self, nursery: trio.Nursery, server: ServerHandle, link: str) -> None:
        invite = parse_link(link)
        self.nursery = nursery
        self.server = server
        self.keys = RoomKeys(invite.secret, invite.room_id)
        self.peer: Peer | None = None

    def join(self, client_id: str) -> None:
        async def joining() -> Peer:
            peer = await connect(self.nursery, self.server, self.keys.room_id, client_id)
            await peer.hello(self.keys.auth)
            return peer

        self.peer = trio.from_thread.run(joining)

    def say(self, text: str, name: str | None = None) -> None:
        assert self.peer is not None
        plaintext = Plaintext(text, new_mid(), int(time.time() * 1000), name)
        sealed = self.keys.seal(plaintext, ClientId(self.peer.client_id))
        envelope = {"type": "message", "iv": sealed.iv, "ciphertext": sealed.ciphertext}
        trio.from_thread.run(self.peer.send, envelope)


async def test_names_are_asked_once_and_shown_before_anyone_speaks(
    server: ServerHandle, nursery: trio.Nursery
) -> None:
    """Defect 2: the first-time prompt, profile signals, names learned from a message."""

    def scenario(session: Session) -> None:
        alice, link = create_room(session)
        check_signal_vector(alice)
        # Entering a room for the first time: an optional name, focus in it.
        expect(alice.get_by_label(PROMPT)).to_be_focused()
        alice.get_by_label(PROMPT).fill("Alice")
        alice.get_by_label(PROMPT).press("Enter")
        box = alice.get_by_label("Message", exact=True)
        expect(box).to_be_focused()
        expect(alice.get_by_label(PROMPT)).to_have_count(0)
        # Not on every reload.
        alice.reload()
        expect(alice.locator(".status")).to_have_attribute("data-state", "open")
        expect(alice.get_by_label(PROMPT)).to_have_count(0)

        # Bob, on a phone, skips the prompt: focus goes to his message box.
        bob = join(session, link, **PHONE)
        expect(bob.get_by_label(PROMPT)).to_be_focused()
        skip = bob.get_by_role("button", name="Skip")
        box_of_skip = skip.bounding_box()
        assert box_of_skip is not None
        assert box_of_skip["x"] + box_of_skip["width"] <= PHONE["width"]
        skip.click()
        expect(bob.get_by_label("Message", exact=True)).to_be_focused()
        expect(bob.get_by_label(PROMPT)).to_have_count(0)
        bob_id = stored_record(bob)["clientId"]
        # Nobody has written anything, yet Bob knows Alice by name (her profile
        # answered his join) and Alice sees Bob's short id.
        expect(bob.locator(".people-list")).to_contain_text("Alice")
        expect(alice.locator(".people-list")).to_contain_text(bob_id[:6])
        assert texts(alice).count() == 0
        # Bob chooses a name: Alice's list and his "joined" line show it at once.
        set_name(bob, "Bob")
        expect(alice.locator(".people-list")).to_contain_text(f"Bob {bob_id[:6]}")
        expect(alice.locator(".messages .system").filter(has_text="joined")).to_contain_text(
            [f"Bob ({bob_id[:6]}) joined"]
        )

        # A third person whose name comes only inside a message (no profile
        # signal): the list is redrawn when that message arrives.
        carol = ThirdPerson(nursery, server, link)
        carol.join("carol01")
        expect(alice.locator(".people-list li")).to_have_count(3)
        expect(alice.locator(".people-list")).to_contain_text("carol0")
        carol.say("hello from carol", name="Carol")
        expect(texts(alice).last).to_have_text("hello from carol")
        expect(alice.locator(".people-list")).to_contain_text("Carol carol0")
        expect(alice.locator(".messages .system").filter(has_text="carol0")).to_contain_text(
            "Carol (carol0) joined"
        )
        assert any(name.startswith("Carol") for name in people_names(bob))

    await run_in_browser(server.base, scenario)


async def test_only_what_this_browser_sent_is_you(
    server: ServerHandle, nursery: trio.Nursery
) -> None:
    """Defect 8: our mids survive a reload; our clientId used elsewhere is flagged."""

    def scenario(session: Session) -> None:
        alice, link = create_room(session)
        alice.get_by_role("button", name="Skip").click()
        say(alice, "from this tab")
        mine = alice.locator(".message.mine")
        expect(mine).to_have_count(1)
        expect(mine.locator(".mark")).to_have_text("Sent")
        alice.reload()
        expect(alice.locator(".status")).to_have_attribute("data-state", "open")
        expect(texts(alice)).to_have_text(["from this tab"])
        expect(mine).to_have_count(1)
        expect(mine.locator(".sender")).to_have_text("You")
        expect(alice.locator(".also-connected")).to_have_count(0)

        # Someone with the link connects under Alice's clientId and writes.
        alice_id = stored_record(alice)["clientId"]
        intruder = ThirdPerson(nursery, server, link)
        intruder.join(alice_id)
        warning = alice.locator(".also-connected")
        expect(warning).to_contain_text("Your id is also connected elsewhere")
        expect(warning).to_contain_text(
            "If it is not yours, the link has leaked: start a new room."
        )
        expect(warning).to_have_attribute("role", "alert")
        intruder.say("not from this tab", name="Alice")
        expect(texts(alice).last).to_have_text("not from this tab")
        forged = alice.locator(".message").last
        expect(forged).to_have_class(re.compile(r"\belsewhere\b"))
        expect(forged).not_to_have_class(re.compile(r"\bmine\b"))
        expect(forged.locator(".sender")).to_have_text("Your id, sent elsewhere")
        expect(forged.locator(".mark")).to_have_count(0)
        expect(mine).to_have_count(1)
        # The warning stays: later notes do not replace it.
        say(alice, "still here")
        expect(mine).to_have_count(2)
        expect(warning).to_be_visible()
        # After a reload the forged message is still not ours, ours still are.
        alice.reload()
        expect(texts(alice)).to_have_text(["from this tab", "not from this tab", "still here"])
        expect(mine).to_have_count(2)
        expect(alice.locator(".message.elsewhere")).to_have_count(1)

    await run_in_browser(server.base, scenario)


async def test_a_reload_or_a_short_visit_leaves_no_joined_left_pair(
    server: ServerHandle, env: dict[str, str]
) -> None:
    """Defect 12: a leave and a rejoin within seconds fold into nothing."""

    def scenario(session: Session) -> None:
        alice, link = create_room(session)
        bob = join(session, link)
        bob.get_by_role("button", name="Skip").click()
        bob_id = stored_record(bob)["clientId"]
        expect(alice.locator(".messages .system")).to_have_count(1)  # Bob joined
        bob.reload()
        expect(bob.locator(".status")).to_have_attribute("data-state", "open")
        say(bob, "back after a reload")
        expect(texts(alice)).to_have_text(["back after a reload"])
        expect(alice.locator(".people .count")).to_have_text("2")
        lines = system_lines(alice)
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"{bob_id[:6]} joined"), lines

        # `securechat send` joins, posts and leaves: only its message stays.
        result = trio.from_thread.run(
            lambda: run(env, "send", link, "from a script", "--client-id", "script1")
        )
        assert result.returncode == 0, result.stderr
        expect(texts(alice).last).to_have_text("from a script")
        expect(alice.locator(".people .count")).to_have_text("2")
        expect(alice.locator(".messages .system").filter(has_text="script")).to_have_count(0)
        assert len(system_lines(alice)) == 1

    await run_in_browser(server.base, scenario)


async def test_typing_is_shown_briefly_and_can_be_turned_off(server: ServerHandle) -> None:
    """The typing indicator: shown, renewed without a new announcement, gone with the message."""

    def scenario(session: Session) -> None:
        alice, link = create_room(session)
        alice.get_by_label(PROMPT).fill("Alice")
        alice.get_by_role("button", name="Use this name").click()
        bob = join(session, link)
        bob.get_by_label(PROMPT).fill("Bob")
        bob.get_by_label(PROMPT).press("Enter")
        expect(alice.locator(".people-list")).to_contain_text("Bob")
        typing = alice.locator(".typing")
        expect(typing).to_have_attribute("aria-live", "polite")
        expect(typing).to_be_empty()

        # Bob types for a little over 3 s: two typing signals, one line on Alice's side.
        box = bob.get_by_label("Message", exact=True)
        before = signals_sent(session, bob)
        box.press_sequentially("hello there", delay=350)
        expect(typing).to_have_text("Bob is typing…")
        session.wait_until(bob, lambda: signals_sent(session, bob) - before >= 2, "a renewal")
        expect(typing.locator(".typist")).to_have_count(1)
        # His message removes it at once, not 6 s later.
        box.press("Enter")
        expect(texts(alice)).to_have_text(["hello there"])
        expect(typing).to_be_empty(timeout=QUICK_MS)

        # Turned off in the menu: no typing signal at all, and it is remembered.
        bob.locator("summary", has_text="Menu").click()
        toggle = bob.get_by_role("button", name="Tell others when I am typing")
        expect(toggle).to_have_attribute("aria-pressed", "true")
        toggle.click()
        expect(toggle).to_have_attribute("aria-pressed", "false")
        bob.keyboard.press("Escape")
        before = signals_sent(session, bob)
        box.press_sequentially("quiet", delay=50)
        box.press("Enter")
        expect(texts(alice)).to_have_text(["hello there", "quiet"])
        assert signals_sent(session, bob) == before
        expect(typing).to_be_empty()
        bob.reload()
        expect(bob.locator(".status")).to_have_attribute("data-state", "open")
        bob.locator("summary", has_text="Menu").click()
        expect(toggle).to_have_attribute("aria-pressed", "false")
        assert urlsplit(bob.url).fragment == ""

    await run_in_browser(server.base, scenario)
