"""The message list in a real Chromium: following, presence, bidi, a hostile server.

Uses the steps of tests/test_browser.py against an in-process server; every
scenario ends with no CSP or Trusted Types violation and no console error.
"""

import json
import os
import re
from typing import Final

import pytest
import trio
from playwright.sync_api import Page, WebSocketRoute, expect

from tests.browser import Session, run_in_browser
from tests.harness import ServerHandle, b64url
from tests.test_browser import (
    SOCKET_REFUSED,
    create_room,
    join,
    say,
    set_name,
    texts,
    wait_connected,
)

# ``server`` is conftest.py's; these tests need Chromium before it starts.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("needs_chromium")]

PHONE: Final = {"width": 390, "height": 640}  # a small phone, portrait


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
        expect(summary).to_have_attribute("aria-label", "2 here: people in this room")
        green = icon.evaluate("e => getComputedStyle(e).color")

        trio.from_thread.run(server.stop)
        expect(alice.locator(".status")).not_to_have_attribute("data-state", "open")
        expect(people).to_have_attribute("data-stale", "true")
        expect(summary).to_have_attribute(
            "aria-label", "2 here when last connected (not connected now): people in this room"
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


def garbage(message_id: int, sent_at: float) -> dict[str, object]:
    """A message no key opens, as a hostile server may relay it."""
    return {
        "type": "message",
        "id": message_id,
        "from": f"x{message_id % 97:09d}",
        "sentAt": sent_at,
        "iv": b64url(os.urandom(12)),
        "ciphertext": b64url(os.urandom(40)),
    }


async def test_a_hostile_server_cannot_break_the_list(server: ServerHandle) -> None:
    """A time a Date cannot hold, the server's own words, a history far too long."""

    def scenario(session: Session) -> None:
        alice, _ = create_room(session)
        say(alice, "a real message")
        expect(alice.locator(".message.pending")).to_have_count(0)
        routes: list[WebSocketRoute] = []

        def route(ws: WebSocketRoute) -> None:
            routes.append(ws)
            upstream = ws.connect_to_server()

            def from_server(frame: str | bytes) -> None:
                if isinstance(frame, str) and '"type":"history"' in frame:
                    history = json.loads(frame)
                    top = max(m["id"] for m in history["messages"])
                    history["messages"] += [garbage(top + 1, 1e16), garbage(top + 2, 1.7e12)]
                    frame = json.dumps(history)
                ws.send(frame)

            upstream.on_message(from_server)

        alice.route_web_socket(re.compile(r"/ws/"), route)
        alice.reload()
        wait_connected(session, alice, 2)
        # The message after the one with an impossible time is shown too.
        expect(alice.locator(".message")).to_have_count(3)
        expect(texts(alice).first).to_have_text("a real message")
        expect(alice.locator(".message.unreadable")).to_have_count(2)

        ws = routes[-1]
        ws.send(json.dumps({"type": "error", "code": "too_large", "message": "VISIT EVIL"}))
        expect(alice.locator(".notice")).to_have_text("The server refused a message as too large.")
        ws.send(json.dumps({"type": "error", "code": "made_up", "message": "VISIT EVIL"}))
        expect(alice.locator(".notice")).to_have_text(
            "The server refused something this page sent."
        )

        many = [garbage(n, 1.7e12 + n) for n in range(1, 3001)]
        ws.send(json.dumps({"type": "history", "messages": many}))
        expect(alice.locator(".message")).to_have_count(1000, timeout=30_000)
        newest = alice.locator(".message").last.locator("time")
        expect(newest).to_have_attribute("datetime", "2023-11-14T22:13:23.000Z")

    await run_in_browser(server.base, scenario, allow=(SOCKET_REFUSED,))
