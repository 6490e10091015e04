"""Telling rooms apart and finding them again, in Chromium against the real server.

- The invite on a phone: the whole link (wrapping), Share where the browser has
  a share sheet, and a QR code drawn in the page that ZXing decodes back to the link.
- The room fingerprint: the same words and colours for everyone with the link,
  others for another room, as docs/protocol.md section 6 says.
- The empty-room hint, shown only while nobody else is here and nothing was said.
- "Your rooms" on /new_chat: listed newest first, opened, forgotten, bounded.
"""

import io
import re
from pathlib import Path
from typing import Final

import pytest
import zxingcpp
from PIL import Image
from playwright.sync_api import Locator, Page, expect

from securechat.peer.fingerprint import room_fingerprint
from securechat.peer.link import parse_link
from tests.browser import Session, require_chromium, run_in_browser
from tests.harness import ServerHandle
from tests.test_browser import create_room, join, say, set_name, wait_connected
from tests.test_fingerprint import FINGERPRINT, VECTORS

pytestmark = pytest.mark.slow

ROOT: Final = Path(__file__).resolve().parent.parent
PHONE: Final = {"width": 390, "height": 844}
ONION: Final = "http://" + "q" * 56 + ".onion/room/oKGio6SlpqeoqaqrrK2urw#" + "A" * 43
LONG: Final = "https://chat.example.org/" + "x" * 125  # 150 characters
MAX_LISTED_ROOMS: Final = int(
    re.search(
        r"MAX_LISTED_ROOMS = (\d+)", (ROOT / "client" / "rooms_list.js").read_text("utf-8")
    ).group(1)  # type: ignore[union-attr]
)
ACTIVITY_SAVE_MS: Final = int(
    re.search(
        r"ACTIVITY_SAVE_MS = ([\d_]+)", (ROOT / "client" / "activity.js").read_text("utf-8")
    ).group(1)  # type: ignore[union-attr]
)
FIRST_HERE: Final = "You are the first here. If you expected others, check that you opened the link"
# Makes the page believe it has a system share sheet; what it shares is recorded.
SHARE_STUB: Final = """
Object.defineProperty(navigator, "share", {
  configurable: true,
  value: async (data) => { window.__shared = data; },
});
"""


def decode_qr(qr: Locator) -> str:
    """The text of the one QR code in a screenshot of ``qr``, read by ZXing."""
    image = Image.open(io.BytesIO(qr.screenshot()))
    found = zxingcpp.read_barcodes(image)
    assert len(found) == 1, found
    assert found[0].format == zxingcpp.BarcodeFormat.QRCode
    text: str = found[0].text
    return text


def draw_qr(page: Page, text: str) -> Locator:
    """Draw ``text`` with the page's own encoder, outside any card, and return it."""
    page.evaluate(
        """async (text) => {
          const { qrSvg } = await import("/qr.js");
          document.getElementById("extra-qr")?.remove();
          const svg = qrSvg(text, "test");
          svg.id = "extra-qr";
          svg.style.width = "400px";
          document.body.append(svg);
        }""",
        text,
    )
    return page.locator("#extra-qr")


def last_activity(page: Page, room_id: str) -> object:
    """The ``lastActivity`` of the room's stored record, as the page's store.js reads it."""
    return page.evaluate(
        """async (roomId) => {
          const { loadRoom } = await import("/store.js");
          return (await loadRoom(roomId))?.lastActivity ?? null;
        }""",
        room_id,
    )


def fingerprint_words(link: str) -> str:
    parsed = parse_link(link)
    return " ".join(room_fingerprint(parsed.secret, parsed.room_id).words)


async def test_the_invite_on_a_phone_is_whole_shareable_and_a_qr_code(
    server: ServerHandle,
) -> None:
    require_chromium()

    def scenario(session: Session) -> None:
        page = session.new_page(**PHONE)
        page.goto("/new_chat")
        field = page.locator("#invite-link")
        link = field.input_value()
        assert "#" in link
        # The whole link is on screen: it wraps inside the box, nothing scrolls away.
        expect(field).to_be_visible()
        box = field.bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= PHONE["width"]
        assert field.evaluate("e => e.scrollHeight <= e.clientHeight + 1")
        assert field.evaluate("e => e.scrollWidth <= e.clientWidth")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        field.click()  # focusing it selects all of it, for copying
        assert field.evaluate("e => [e.selectionStart, e.selectionEnd]") == [0, len(link)]
        # No share sheet in this browser: no Share button.
        expect(page.get_by_role("button", name="Share…")).to_be_hidden()
        # The QR code on the page is the link.
        qr = page.locator(".card .qr")
        expect(qr).to_be_visible()
        assert decode_qr(qr) == link
        # The page's encoder, for links as long as an onion address makes them, and
        # past version 9, where the length field grows to 16 bits.
        for text, version in (
            (ONION, "8"),
            (LONG, "8"),
            ("https://example.org/#" + "y" * 280, "13"),
        ):
            drawn = draw_qr(page, text)
            expect(drawn).to_have_attribute("data-version", version)
            assert decode_qr(drawn) == text

        # In the room: "Show invite QR" opens a dialog with the same link and code.
        page.get_by_role("button", name="Enter the room").click()
        wait_connected(session, page, 1)
        menu = page.locator(".menu > summary")
        menu.click()
        page.get_by_role("button", name="Show invite QR").click()
        dialog = page.get_by_role("dialog", name="Invite to this room")
        expect(dialog).to_be_visible()
        expect(dialog.locator("textarea")).to_have_value(link)
        assert decode_qr(dialog.locator(".qr")) == link
        dialog.get_by_role("button", name="Close").click()
        expect(dialog).to_have_count(0)
        expect(menu).to_be_focused()

        # Where the browser has a share sheet, Share gives it the link; the code
        # stays dark on light in the dark colour scheme.
        dark = session.new_page(**PHONE, color_scheme="dark")
        dark.context.add_init_script(SHARE_STUB)
        dark.goto("/new_chat")
        dark_link = dark.locator("#invite-link").input_value()
        dark.get_by_role("button", name="Share…").click()
        dark.wait_for_function("window.__shared !== undefined")
        assert dark.evaluate("window.__shared") == {"title": "securechat room", "url": dark_link}
        assert decode_qr(dark.locator(".card .qr")) == dark_link

    await run_in_browser(server.base, scenario)


async def test_the_fingerprint_tells_rooms_apart_and_an_empty_room_says_so(
    server: ServerHandle,
) -> None:
    require_chromium()

    def scenario(session: Session) -> None:
        alice, link = create_room(session)
        words = fingerprint_words(link)
        # The page computes docs/protocol.md's vector.
        vector = alice.evaluate(
            """async (v) => {
              const { roomFingerprint } = await import("/fingerprint.js");
              return await roomFingerprint(v.secret, v.roomId);
            }""",
            VECTORS,
        )
        assert vector["words"] == list(FINGERPRINT.words)
        assert vector["colours"] == list(FINGERPRINT.colours)
        # Alone in a new room: the hint, and the fingerprint in the header.
        hint = alice.locator(".first-here")
        expect(hint).to_be_visible()
        expect(hint).to_contain_text(FIRST_HERE)
        expect(alice.locator(".room-title .fp-words")).to_have_text(words)

        bob = join(session, link)
        expect(hint).to_be_hidden()
        expect(bob.locator(".first-here")).to_be_hidden()
        expect(bob.locator(".room-title .fp-words")).to_have_text(words)
        # In full in the people popover, with what to do with it.
        bob.locator(".people > summary").click()
        full = bob.locator(".people .fingerprint.full")
        expect(full).to_be_visible()
        expect(full.locator(".fp-words")).to_have_text(words)
        expect(full).to_contain_text(
            "Compare these words out loud to be sure you are in the same room"
        )
        parsed = parse_link(link)
        colours = list(room_fingerprint(parsed.secret, parsed.room_id).colours)
        blocks = full.locator(".fp-block")
        assert [blocks.nth(i).get_attribute("data-colour") for i in range(4)] == colours
        expect(full.locator(".fp-blocks")).to_have_attribute(
            "aria-label", f"Colours: {', '.join(colours)}"
        )

        # Another room has another fingerprint.
        carol, other = create_room(session)
        other_words = fingerprint_words(other)
        assert other_words != words
        expect(carol.locator(".room-title .fp-words")).to_have_text(other_words)

        # Bob leaves: Alice is alone again, until a message is written.
        bob.close()
        expect(alice.locator(".people .count")).to_have_text("1")
        expect(hint).to_be_visible()
        say(alice, "anyone?")
        expect(hint).to_be_hidden()

    await run_in_browser(server.base, scenario)


async def test_your_rooms_are_listed_opened_and_forgotten(server: ServerHandle) -> None:
    require_chromium()

    def scenario(session: Session) -> None:
        page = session.new_page()
        page.goto("/new_chat")
        rooms = page.locator("section.rooms")
        expect(page.locator("#invite-link")).to_be_visible()
        expect(rooms).to_be_hidden()  # no room yet

        first_link = page.locator("#invite-link").input_value()
        page.get_by_role("button", name="Enter the room").click()
        wait_connected(session, page, 1)
        set_name(page, "Alice")
        first_words = fingerprint_words(first_link)
        expect(page.locator(".room-title .fp-words")).to_have_text(first_words)
        # Back from the room: /new_chat with the room in "Your rooms".
        page.go_back()
        expect(page).to_have_url(re.compile(r"/new_chat$"))
        items = rooms.locator(".room-item")
        expect(items).to_have_count(1)
        expect(items.first).to_contain_text(first_words)
        expect(items.first).to_contain_text("You are “Alice”")
        expect(items.first.locator("time")).to_have_count(1)
        first_id = parse_link(first_link).room_id
        opened_at = last_activity(page, first_id)
        assert isinstance(opened_at, int | float)
        expect(items.first.locator("a")).to_have_attribute("href", f"/room/{first_id}")

        second_link = page.locator("#invite-link").input_value()
        page.get_by_role("button", name="Enter the room").click()
        wait_connected(session, page, 2)
        page.go_back()
        second_words = fingerprint_words(second_link)
        expect(items).to_have_count(2)
        expect(items.nth(0)).to_contain_text(second_words)  # newest first
        expect(items.nth(1)).to_contain_text(first_words)
        expect(items.nth(1)).to_contain_text("You are “Alice”")

        # Open the first room from the list: no link needed, its fingerprint shows.
        items.nth(1).locator("a").click()
        expect(page).to_have_url(re.compile(f"/room/{first_id}$"))
        wait_connected(session, page, 3)
        expect(page.locator(".room-title .fp-words")).to_have_text(first_words)
        page.go_back()
        expect(items).to_have_count(2)
        expect(items.nth(0)).to_contain_text(first_words)  # opened last
        reopened_at = last_activity(page, first_id)
        assert isinstance(reopened_at, int | float)
        assert reopened_at > opened_at

        # Forget asks first; Cancel keeps the room.
        forget = page.get_by_role("button", name=f"Forget {first_words}")
        forget.click()
        page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
        expect(items).to_have_count(2)
        forget.click()
        page.get_by_role("dialog").get_by_role("button", name="Forget this room").click()
        expect(items).to_have_count(1)
        expect(items.first).to_contain_text(second_words)
        expect(page.locator("#rooms-title")).to_be_focused()
        page.reload()
        expect(items).to_have_count(1)
        page.goto(f"/room/{first_id}")
        expect(page.get_by_role("heading", name="This room's key is missing")).to_be_visible()

        # The list is bounded: many stored rooms show only the newest few.
        page.goto("/new_chat")
        expect(items).to_have_count(1)
        page.evaluate(
            """async (count) => {
              const db = await new Promise((resolve, reject) => {
                const req = indexedDB.open("secure_chat_keys");
                req.onsuccess = () => resolve(req.result);
                req.onerror = () => reject(req.error);
              });
              const tx = db.transaction("room_keys", "readwrite");
              const secret = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
              const now = Date.now();
              for (let i = 0; i < count; i++) {
                tx.objectStore("room_keys").put({
                  roomId: `many${String(i).padStart(3, "0")}`, secret, clientId: "many0001",
                  updatedAt: now + i, lastActivity: now + 1000 + i,
                });
              }
              await new Promise((resolve) => { tx.oncomplete = resolve; });
              db.close();
            }""",
            MAX_LISTED_ROOMS + 5,
        )
        page.reload()
        expect(items).to_have_count(MAX_LISTED_ROOMS)
        newest = f"many{MAX_LISTED_ROOMS + 4:03d}"
        expect(items.first.locator("a")).to_have_attribute("href", f"/room/{newest}")

        # lastActivity is written when a room opens, then at most once a minute
        # while messages arrive: the last one is written when the minute is up.
        timed = session.new_page()
        timed.clock.install()
        timed.goto("/new_chat")
        # IndexedDB reads, not timers, wait for the saves: the page's timers follow the clock.
        opened = timed.evaluate(
            """async () => {
              const { ActivityClock } = await import("/activity.js");
              const { loadRoom, saveRoom } = await import("/store.js");
              await saveRoom({ roomId: "clock01", clientId: "clock0001", kept: "other field" });
              const record = { roomId: "clock01", clientId: "clock0001" };
              window.__activity = new ActivityClock(record);
              window.__activity.touch();
              for (let i = 0; i < 1000; i++) {
                const stored = await loadRoom("clock01");
                if (stored.lastActivity) return stored.lastActivity;
              }
              return null;
            }"""
        )
        assert isinstance(opened, int)
        timed.clock.run_for(1000)
        noted, stored = timed.evaluate(
            """async () => {
              const { loadRoom } = await import("/store.js");
              window.__activity.touch();
              const stored = (await loadRoom("clock01")).lastActivity;
              return [window.__activity.record.lastActivity, stored];
            }"""
        )
        assert noted > opened
        assert stored == opened  # not written again within the minute
        timed.clock.run_for(ACTIVITY_SAVE_MS)
        written = timed.evaluate(
            """async (expected) => {
              const { loadRoom } = await import("/store.js");
              for (let i = 0; i < 1000; i++) {
                const stored = await loadRoom("clock01");
                if (stored.lastActivity === expected) return stored;
              }
              return null;
            }""",
            noted,
        )
        assert written is not None
        assert written["kept"] == "other field"  # only lastActivity changed

    await run_in_browser(server.base, scenario)
