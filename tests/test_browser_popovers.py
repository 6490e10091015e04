"""The room's header popovers and the keyboard focus, in Chromium."""

import pytest
from playwright.sync_api import expect

from tests.browser import Session, require_chromium, run_in_browser
from tests.harness import ServerHandle
from tests.test_browser import create_room, join, say, texts

pytestmark = pytest.mark.slow


async def test_one_popover_at_a_time_closed_by_outside_click_and_escape(
    server: ServerHandle,
) -> None:
    require_chromium()

    def scenario(session: Session) -> None:
        page, link = create_room(session)
        join(session, link)
        people, menu = page.locator("details.people"), page.locator("details.menu")
        page.locator(".people > summary").click()
        expect(people).to_have_attribute("open", "")
        # Opening the menu closes the people list: they never overlap.
        page.locator(".menu > summary").click()
        expect(menu).to_have_attribute("open", "")
        expect(people).not_to_have_attribute("open", "")
        # A click outside closes it.
        page.locator(".scroller").click()
        expect(menu).not_to_have_attribute("open", "")
        page.locator(".people > summary").click()
        expect(people).to_have_attribute("open", "")
        page.locator(".room-title h1").click()
        expect(people).not_to_have_attribute("open", "")
        # Escape closes it and gives the focus back to its button.
        page.locator(".menu > summary").click()
        page.get_by_role("button", name="Your name…").focus()
        page.keyboard.press("Escape")
        expect(menu).not_to_have_attribute("open", "")
        expect(page.locator(".menu > summary")).to_be_focused()
        # Escape with the focus in the message box closes the popover, the box keeps the focus.
        page.locator(".people > summary").click()
        box = page.get_by_label("Message", exact=True)
        box.focus()
        page.keyboard.press("Escape")
        expect(people).not_to_have_attribute("open", "")
        expect(box).to_be_focused()

    await run_in_browser(server.base, scenario)


async def test_focus_returns_to_the_menu_button_and_stays_in_the_message_box(
    server: ServerHandle,
) -> None:
    require_chromium()

    def scenario(session: Session) -> None:
        page, _ = create_room(session)
        menu_button = page.locator(".menu > summary")
        box = page.get_by_label("Message", exact=True)

        def choose(item: str) -> None:
            menu_button.click()
            page.get_by_role("button", name=item).click()
            expect(page.get_by_role("dialog")).to_be_visible()

        choose("Your name…")
        page.get_by_label("Display name").fill("Alice")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("dialog")).to_have_count(0)
        expect(menu_button).to_be_focused()

        choose("Your name…")
        page.keyboard.press("Escape")
        expect(page.get_by_role("dialog")).to_have_count(0)
        expect(menu_button).to_be_focused()

        choose("Clear history…")
        page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
        expect(menu_button).to_be_focused()

        choose("Forget this room…")
        page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
        expect(menu_button).to_be_focused()

        # Clicking Send leaves the focus in the message box (a phone keeps its keyboard).
        box.fill("by the button")
        page.get_by_role("button", name="Send").click()
        expect(texts(page)).to_have_text(["by the button"])
        expect(box).to_be_focused()
        expect(box).to_have_value("")
        say(page, "then by Enter")
        expect(texts(page)).to_have_text(["by the button", "then by Enter"])
        expect(box).to_be_focused()

    def phone(session: Session) -> None:
        _, link = create_room(session)
        page = join(session, link, width=390, height=700, has_touch=True, is_mobile=True)
        box = page.get_by_label("Message", exact=True)
        box.fill("by a tap")
        page.get_by_role("button", name="Send").tap()
        expect(texts(page)).to_have_text(["by a tap"])
        expect(box).to_be_focused()

    await run_in_browser(server.base, scenario)
    await run_in_browser(server.base, phone)
