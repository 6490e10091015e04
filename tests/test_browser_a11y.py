"""axe-core on every state of the page, light and dark, on a desktop and a phone.

One scenario per viewport walks a person through the states: /new_chat, the
room connected with messages from both sides, the People and Menu popovers,
each dialog (name, clear, forget, the privacy note), every full-page
explanation, and last the room disconnected with a message waiting (the server
is stopped). Each state is checked in the light and
the dark scheme (``emulate_media``) with tests/axe.py's ``assert_accessible``.
"""

import os
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import urlsplit

import pytest
import trio
from playwright.sync_api import Page, expect

from tests.axe import assert_accessible
from tests.browser import Session, require_chromium, run_in_browser
from tests.harness import ServerHandle, b64url
from tests.test_browser import SOCKET_REFUSED, join, say, set_name, texts

pytestmark = pytest.mark.slow

DESKTOP: Final[dict[str, Any]] = {"width": 1280, "height": 800}
PHONE: Final[dict[str, Any]] = {"width": 390, "height": 844, "is_mobile": True, "has_touch": True}
SCHEMES: Final = ("light", "dark")


def check(page: Page, state: str) -> None:
    """``state`` has no serious or critical axe violation, in either colour scheme."""
    for scheme in SCHEMES:
        page.emulate_media(color_scheme=scheme)
        assert_accessible(page, f"{state}, {scheme}")
    page.emulate_media(color_scheme=None)


def in_dialog(page: Page, open_it: Callable[[], None], state: str, close: str = "Cancel") -> None:
    """Open a dialog, check it, and close it with its ``close`` button."""
    open_it()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    check(page, state)
    dialog.get_by_role("button", name=close).click()
    expect(dialog).to_have_count(0)


def from_menu(page: Page, item: str) -> Callable[[], None]:
    def choose() -> None:
        page.locator(".menu > summary").click()
        page.get_by_role("button", name=item).click()

    return choose


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
async def test_every_state_has_no_serious_axe_violation(
    server: ServerHandle, viewport: dict[str, Any]
) -> None:
    require_chromium()

    def scenario(session: Session) -> None:
        start = session.new_page(**viewport)
        start.goto("/new_chat")
        expect(start.locator("#invite-link")).not_to_have_value("")
        check(start, "/new_chat")
        link = start.locator("#invite-link").input_value()
        start.close()

        alice = join(session, link, **viewport)
        bob = join(session, link)
        set_name(bob, "Bob")
        say(bob, "Hello from Bob")
        expect(texts(alice)).to_have_text(["Hello from Bob"])
        say(alice, "Hello from Alice")
        expect(texts(alice)).to_have_text(["Hello from Bob", "Hello from Alice"])
        expect(alice.locator(".message.mine .mark")).to_have_text(["Sent"])
        expect(alice.locator(".people .count")).to_have_text("2")
        check(alice, "the room, connected")

        alice.locator(".people > summary").click()
        expect(alice.locator(".people-list li")).to_have_count(2)
        check(alice, "the People popover")
        alice.locator(".menu > summary").click()
        expect(alice.get_by_role("button", name="Your name…")).to_be_visible()
        check(alice, "the Menu")
        alice.keyboard.press("Escape")

        in_dialog(alice, from_menu(alice, "Your name…"), "the name dialog")
        in_dialog(alice, from_menu(alice, "Clear history…"), "the clear history question")
        in_dialog(alice, from_menu(alice, "Forget this room…"), "the forget question")
        privacy = "How your privacy is protected"
        in_dialog(alice, from_menu(alice, privacy), "the privacy note", close="Close")

        room_path = urlsplit(link).path
        problems = session.new_page(**viewport)
        problems.goto(f"{room_path}#not-a-key")
        expect(problems.locator("h1")).to_have_text("This link is damaged")
        check(problems, "a damaged link")
        problems.goto(room_path)
        expect(problems.locator("h1")).to_have_text("This room's key is missing")
        check(problems, "the key missing")
        # The server serves the page at /new_chat and /room/<id> only: "Nothing here" is
        # what a proxy that sends other paths to the page would show.
        problems.route(
            "**/elsewhere",
            lambda route: route.fulfill(response=route.fetch(url=f"{server.base}/new_chat")),
        )
        problems.goto("/elsewhere")
        expect(problems.locator("h1")).to_have_text("Nothing here")
        check(problems, "nothing here")
        problems.goto(f"{room_path}#{b64url(os.urandom(32))}")
        expect(problems.locator("h1")).to_have_text("This link's key does not match this room")
        check(problems, "a wrong key (4401)")
        in_dialog(
            problems,
            problems.get_by_role("button", name="Forget this room").click,
            "the forget question on the wrong key page",
        )
        problems.get_by_role("button", name="Forget this room").click()
        problems.get_by_role("dialog").get_by_role("button", name="Forget this room").click()
        expect(problems.locator("h1")).to_have_text("Room forgotten")
        check(problems, "a forgotten room")

        insecure = session.new_page(**viewport)
        insecure.context.add_init_script(
            "Object.defineProperty(window, 'isSecureContext', { value: false });"
        )
        insecure.goto("/new_chat")
        expect(insecure.locator("h1")).to_have_text("This page needs a secure connection")
        check(insecure, "no secure context")

        trio.from_thread.run(server.stop)
        expect(alice.locator(".status")).to_have_attribute("data-state", "waiting")
        reconnect = alice.get_by_role("button", name="Reconnect now")
        expect(reconnect).to_be_visible()
        # WCAG 2.5.8: at least 24x24 CSS px (axe lets a small target pass when nothing
        # is near it), and a finger's 44 px on a touch screen.
        box = reconnect.bounding_box()
        assert box is not None
        assert box["width"] >= 24
        assert box["height"] >= (44 if viewport.get("has_touch") else 24)
        say(alice, "written while disconnected")
        # Written while disconnected: queued until the page is back (client/pending.js).
        expect(alice.locator(".message.pending .mark")).to_have_text("Queued")
        check(alice, "the room, disconnected, a message waiting")

    await run_in_browser(server.base, scenario, allow=(SOCKET_REFUSED,))
