"""The message list in a real Chromium: following new messages, presence.

Uses the steps of tests/test_browser.py against an in-process server; every
scenario ends with no CSP or Trusted Types violation and no console error.
"""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import pytest
import trio
from playwright.sync_api import Page, expect

from tests.browser import Session, require_chromium, run_in_browser
from tests.harness import ServerHandle, make_config, start_server
from tests.test_browser import SOCKET_REFUSED, create_room, join, say, set_name, texts

pytestmark = pytest.mark.slow

PHONE: Final = {"width": 390, "height": 640}  # a small phone, portrait


@pytest.fixture
async def server(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[ServerHandle]:
    require_chromium()
    handle = await start_server(nursery, make_config(tmp_path / "data"))
    yield handle
    await handle.stop()


def below_view(page: Page) -> float:
    """How many pixels of the list are below the visible part."""
    distance: float = page.locator(".scroller").evaluate(
        "s => s.scrollHeight - s.scrollTop - s.clientHeight"
    )
    return distance


async def test_new_messages_of_any_height_scroll_into_view_on_a_phone(
    server: ServerHandle,
) -> None:
    """At the bottom the list follows 1- to 6-line messages; scrolled up, a button instead."""

    def scenario(session: Session) -> None:
        alice, link = create_room(session)
        bob = join(session, link, **PHONE)
        for n in range(12):  # enough to make the list scroll
            say(alice, f"filler {n}")
        expect(texts(bob)).to_have_count(12)
        assert below_view(bob) < 2
        for lines in (1, 2, 3, 6, 2):
            text = "\n".join(f"line {n} of {lines}" for n in range(1, lines + 1))
            say(alice, text)
            expect(texts(bob).last).to_have_text(text)
            assert below_view(bob) < 2, lines

        # Scrolled up to read: no jump, a button says there is more below.
        bob.locator(".scroller").evaluate("s => { s.scrollTop = 0; }")
        button = bob.get_by_role("button", name="New messages ↓")
        expect(button).to_be_hidden()
        say(alice, "while you were reading\nsecond line")
        expect(texts(bob).last).to_have_text("while you were reading\nsecond line")
        expect(button).to_be_visible()
        assert bob.locator(".scroller").evaluate("s => s.scrollTop") == 0
        button.click()
        expect(button).to_be_hidden()
        assert below_view(bob) < 2
        # Our own message always scrolls into view.
        bob.locator(".scroller").evaluate("s => { s.scrollTop = 0; }")
        say(bob, "mine\nalways\nshows")
        expect(texts(bob).last).to_have_text("mine\nalways\nshows")
        assert below_view(bob) < 2

    await run_in_browser(server.base, scenario, allow=(SOCKET_REFUSED,))


async def test_presence_is_grey_and_marked_stale_unless_connected(server: ServerHandle) -> None:
    """The people dot is green only while connected; the count says it is the last seen."""

    def scenario(session: Session) -> None:
        alice, link = create_room(session)
        join(session, link)
        people = alice.locator(".people")
        summary = people.locator("summary")
        icon = alice.locator(".people-icon")
        expect(alice.locator(".people .count")).to_have_text("2")
        expect(summary).to_have_attribute("aria-label", "2 people in this room")
        green = icon.evaluate("e => getComputedStyle(e).color")

        trio.from_thread.run(server.stop)
        expect(alice.locator(".status")).not_to_have_attribute("data-state", "open")
        expect(people).to_have_attribute("data-stale", "true")
        expect(summary).to_have_attribute(
            "aria-label", "2 people in this room when last connected (not connected now)"
        )
        grey = icon.evaluate("e => getComputedStyle(e).color")
        assert grey != green

    await run_in_browser(server.base, scenario, allow=(SOCKET_REFUSED,))


async def test_right_to_left_text_and_hostile_names_stay_in_their_place(
    server: ServerHandle,
) -> None:
    """dir="auto" on text and names; names and ids isolated; bidi controls stripped."""

    def scenario(session: Session) -> None:
        alice, link = create_room(session)
        bob = join(session, link)
        set_name(bob, "\u202eecilA")
        say(bob, "שלום עולם")
        expect(texts(alice)).to_have_text(["שלום עולם"])
        message = alice.locator(".message").last
        assert message.locator(".text").evaluate("e => getComputedStyle(e).direction") == "rtl"
        sender = message.locator(".sender")
        expect(sender).to_have_text("\ufffdecilA")
        for part in (sender, message.locator(".cid")):
            assert part.evaluate("e => getComputedStyle(e).unicodeBidi") == "isolate"
            expect(part).to_have_attribute("dir", "auto")
        bob.locator(".people > summary").click()  # bob's own name, as stored
        person = bob.locator(".people-list li", has_text="ecilA")
        expect(person).to_have_count(1)
        assert "\u202e" not in person.inner_text()
        bob.reload()  # a join line now names bob
        expect(alice.locator(".system").last).to_contain_text("\ufffdecilA")
        assert "\u202e" not in alice.locator(".messages").inner_text()

    await run_in_browser(server.base, scenario, allow=(SOCKET_REFUSED,))
