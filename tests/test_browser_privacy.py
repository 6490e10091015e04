"""The page's own privacy notes, and the fact they state: the browser's history keeps the link.

``location.replace`` and ``history.replaceState`` clean the tab's session history
only. Chromium's global history (its profile's History database) keeps the full
invite link, secret included, also after *Forget this room*: the page cannot
change that, so it says so, where a person reaches it with the keyboard.
"""

import sqlite3
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import pytest
import trio
from playwright.sync_api import Locator, Page, expect, sync_playwright

from tests.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    STEP_MS,
    WATCH_SCRIPT,
    Session,
    require_chromium,
    run_in_browser,
)
from tests.harness import ServerHandle

pytestmark = pytest.mark.slow

TITLE: Final = "How your privacy is protected"
MAX_TABS: Final = 20  # more Tab presses than the page has controls


def tab_to(page: Page, target: Locator) -> None:
    """Press Tab until ``target`` has the focus: it is reachable by keyboard."""
    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        if target.evaluate("e => e === document.activeElement"):
            return
    raise AssertionError(f"{target} is not reachable with Tab")


def read_note(page: Page) -> None:
    """The open note says where the link stays and what a person can do about it."""
    dialog = page.get_by_role("dialog", name=TITLE)
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("button", name="Close")).to_be_focused()
    expect(dialog).to_contain_text("Your browser's history keeps the whole invite link")
    expect(dialog).to_contain_text("“Forget this room” does not remove it either")
    expect(dialog).to_contain_text("syncs its history")
    expect(dialog).to_contain_text("private (incognito) window")
    expect(dialog).to_contain_text("Delete the link from the browser's history")
    expect(dialog).to_contain_text("Turn off history sync")


async def test_the_privacy_note_is_reachable_by_keyboard(server: ServerHandle) -> None:
    require_chromium()

    def scenario(session: Session) -> None:
        page = session.new_page()
        page.goto("/new_chat")
        expect(page.locator("#invite-link-help")).to_contain_text("keep it in their history")
        note = page.get_by_role("button", name=TITLE)
        tab_to(page, note)
        page.keyboard.press("Enter")
        read_note(page)
        page.keyboard.press("Enter")  # on Close
        expect(page.get_by_role("dialog")).to_have_count(0)
        expect(note).to_be_focused()

        page.get_by_role("button", name="Enter the room").click()
        expect(page.locator(".status")).to_have_attribute("data-state", "open")
        menu = page.locator(".menu > summary")
        tab_to(page, menu)
        page.keyboard.press("Enter")
        tab_to(page, page.get_by_role("button", name=TITLE))
        page.keyboard.press("Enter")
        read_note(page)
        page.keyboard.press("Escape")
        expect(page.get_by_role("dialog")).to_have_count(0)
        expect(menu).to_be_focused()

        menu.press("Enter")
        page.get_by_role("button", name="Forget this room…").click()
        page.get_by_role("dialog").get_by_role("button", name="Forget this room").click()
        expect(page.locator("h1")).to_have_text("Room forgotten")
        expect(page.locator(".problem")).to_contain_text("may still be in this browser's history")

    await run_in_browser(server.base, scenario)


async def test_the_link_stays_in_chromiums_history_after_forget(
    server: ServerHandle, tmp_path: Path
) -> None:
    """What the note says, seen in a real profile: the page cannot take the link back."""
    require_chromium()
    profile = tmp_path / "profile"

    def scenario() -> tuple[str, list[str], list[str]]:
        violations: list[str] = []
        errors: list[str] = []
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
                base_url=server.base,
            )
            context.set_default_timeout(STEP_MS)
            context.expose_function("__securechatViolation", lambda text: violations.append(text))
            context.add_init_script(WATCH_SCRIPT)
            page = context.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto("/new_chat")
            link = page.locator("#invite-link").input_value()
            page.goto(link)
            expect(page.locator(".status")).to_have_attribute("data-state", "open")
            assert "#" not in page.url
            page.locator(".menu > summary").click()
            page.get_by_role("button", name="Forget this room…").click()
            page.get_by_role("dialog").get_by_role("button", name="Forget this room").click()
            expect(page.locator("h1")).to_have_text("Room forgotten")
            context.close()  # writes the History database out
        return link, violations, errors

    link, violations, errors = await trio.to_thread.run_sync(scenario)
    assert violations == []
    assert errors == []
    with sqlite3.connect(profile / "Default" / "History") as db:
        urls = [row[0] for row in db.execute("SELECT url FROM urls")]
    secret = urlsplit(link).fragment
    assert link in urls  # the whole link, secret included, is still there
    assert [url for url in urls if secret in url] == [link]
