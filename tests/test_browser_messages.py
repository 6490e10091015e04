"""The message list and notifications in a real Chromium against a real server.

Groups of one sender's messages, date dividers, the unread divider, links, the
single "Sent" mark and desktop notifications. Times and delivery order are
driven through Playwright's ``route_web_socket`` on the reader's socket: the
real server relays real ciphertext, and the route rewrites a message's
``sentAt`` (which no key covers) or holds a frame back, as a slow or lying
server could. Every scenario ends with no CSP or Trusted Types violation and no
console error.
"""

import json
import re
from typing import Any, Final

import pytest
from playwright.sync_api import Page, WebSocketRoute, expect

from tests.browser import Session, run_in_browser
from tests.harness import ServerHandle
from tests.test_browser import SOCKET_REFUSED, create_room, say, set_name, texts, wait_connected

# ``server`` is conftest.py's; these tests need Chromium before it starts.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("needs_chromium")]

PHONE: Final = {"width": 390, "height": 844}
DAY_MS: Final = 24 * 3600 * 1000

# Records every `new Notification(...)` and every tone instead of showing or
# playing it; the browser's own permission is still what the page sees.
CAPTURE: Final = """
(() => {
  const Real = window.Notification;
  window.__notes = [];
  window.__asked = 0;
  window.__tones = 0;
  class Captured {
    constructor(title, options = {}) {
      window.__notes.push({ title, body: options.body || "" });
      this.onclick = null;
    }
    close() {}
    static get permission() { return Real.permission; }
    static requestPermission() { window.__asked += 1; return Real.requestPermission(); }
  }
  window.Notification = Captured;
  const start = OscillatorNode.prototype.start;
  OscillatorNode.prototype.start = function (...args) {
    window.__tones += 1;
    return start.apply(this, args);
  };
})();
"""

# Makes the page believe its tab was hidden or shown again.
SET_HIDDEN: Final = """(hidden) => {
  Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
  Object.defineProperty(document, "visibilityState", {
    configurable: true, get: () => (hidden ? "hidden" : "visible"),
  });
  document.dispatchEvent(new Event("visibilitychange"));
}"""


class Relay:
    """The reader's socket, through a route: times rewritten and frames held back by id."""

    def __init__(self, page: Page) -> None:
        self.times: dict[int, float] = {}  # message id -> the sentAt the page is told
        self.hold: set[int] = set()  # message ids held back until released
        self.held: dict[int, str] = {}
        self.route: WebSocketRoute | None = None
        page.route_web_socket(re.compile(r"/ws/"), self.connect)

    def connect(self, ws: WebSocketRoute) -> None:
        self.route = ws
        upstream = ws.connect_to_server()

        def from_server(frame: str | bytes) -> None:
            if isinstance(frame, str) and '"type":"message"' in frame:
                message = self.retime(json.loads(frame))
                if message["id"] in self.hold:
                    self.held[message["id"]] = json.dumps(message)
                    return
                frame = json.dumps(message)
            elif isinstance(frame, str) and '"type":"history"' in frame:
                history = json.loads(frame)
                history["messages"] = [self.retime(m) for m in history["messages"]]
                frame = json.dumps(history)
            ws.send(frame)

        upstream.on_message(from_server)

    def retime(self, message: dict[str, Any]) -> dict[str, Any]:
        if message["id"] in self.times:
            message["sentAt"] = self.times[message["id"]]
        return message

    def release(self, message_id: int) -> None:
        self.hold.discard(message_id)
        assert self.route is not None
        self.route.send(self.held.pop(message_id))


def reader(session: Session, link: str, **options: Any) -> tuple[Page, Relay]:
    page = session.new_page(**options)
    relay = Relay(page)
    page.clock.install()  # runs with real time until a test jumps it ahead
    page.goto(link)
    wait_connected(session, page, 1)
    return page, relay


def message(page: Page, text: str) -> Any:
    return page.locator(".message", has=page.locator(".text", has_text=text))


def below_view(page: Page) -> float:
    """How many pixels of the list are below the visible part."""
    distance: float = page.locator(".scroller").evaluate(
        "s => s.scrollHeight - s.scrollTop - s.clientHeight"
    )
    return distance


def names_seen(page: Page) -> list[str]:
    """The sender names a sighted reader sees, top to bottom (not clipped away, not hidden)."""
    names: list[str] = page.locator(".message .sender").evaluate_all(
        """els => els
          .filter((e) => e.closest(".meta").getBoundingClientRect().width > 1)
          .filter((e) => getComputedStyle(e).display !== "none")
          .map((e) => e.textContent)"""
    )
    return names


def set_hidden(page: Page, hidden: bool) -> None:
    page.evaluate(SET_HIDDEN, hidden)


async def test_groups_dates_links_and_one_sent_mark(server: ServerHandle) -> None:
    """Groups hold across insertions and a clear; dates divide days; only http(s) links."""

    def scenario(session: Session) -> None:
        alice, link = create_room(session)
        set_name(alice, "Alice")
        bob, relay = reader(session, link)
        midnight: float = bob.evaluate("new Date().setHours(0, 0, 0, 0)")
        relay.times = {
            1: midnight - 3 * DAY_MS + 12 * 3600_000,  # three days ago, noon
            2: midnight - DAY_MS + 10 * 3600_000,  # yesterday 10:00
            3: midnight - DAY_MS + 10 * 3600_000 + 120_000,  # yesterday 10:02: same group
        }
        for text in ("three days ago", "yesterday one", "yesterday two"):
            say(alice, text)
        links = (
            "see https://example.com/a?b=1. or (HTTPS://Example.COM/Ünï) "
            "not javascript:alert(1) nor data:text/html,hi nor https://javascript:alert(1)"
        )
        say(alice, links)
        expect(texts(bob)).to_have_count(4)
        older = bob.evaluate(
            "(ms) => new Intl.DateTimeFormat(undefined, { dateStyle: 'full' }).format(ms)",
            relay.times[1],
        )
        expect(bob.locator(".day-divider")).to_have_text([older, "Yesterday", "Today"])
        # One name per group: "yesterday two" continues "yesterday one"; a day starts anew.
        expect(message(bob, "yesterday two")).to_have_class(re.compile(r"\bcontinued\b"))
        assert names_seen(bob) == ["Alice", "Alice", "Alice"]
        # Hidden from sight only: a screen reader still hears who wrote it.
        expect(message(bob, "yesterday two").get_by_text("Alice")).to_have_count(1)
        expect(message(bob, "yesterday one").locator(".sender")).to_have_text("Alice")

        # Links: http(s) only, opening apart from this page, the sender's text kept.
        text = message(bob, "see https").locator(".text")
        expect(text).to_have_text(links)
        anchors = text.locator("a")
        expect(anchors).to_have_count(2)
        expect(anchors).to_have_text(["https://example.com/a?b=1", "HTTPS://Example.COM/Ünï"])
        hrefs = [anchors.nth(n).get_attribute("href") for n in range(2)]
        assert hrefs == ["https://example.com/a?b=1", "https://example.com/%C3%9Cn%C3%AF"]
        for n in range(2):
            expect(anchors.nth(n)).to_have_attribute("target", "_blank")
            expect(anchors.nth(n)).to_have_attribute("rel", "noopener noreferrer")

        # Where an address ends, and what is not one, straight from links.js.
        split = bob.evaluate(
            """async (samples) => {
              const { linkify } = await import("/links.js");
              return samples.map((text) =>
                linkify(text).map((n) => (n.href ? ["a", n.textContent, n.href] : n.textContent)),
              );
            }""",
            [
                "(see https://en.wikipedia.org/wiki/Trio_(software)).",
                "http:// ftp://x.test xhttps://x.test file:///etc/passwd",
                "HTTP://X.TEST:80/a b",
            ],
        )
        wiki = "https://en.wikipedia.org/wiki/Trio_(software)"
        assert split == [
            ["(see ", ["a", wiki, wiki], ")."],
            ["http:// ftp://x.test xhttps://x.test file:///etc/passwd"],
            [["a", "HTTP://X.TEST:80/a", "http://x.test/a"], " b"],
        ]

        # Same sender, now: a group again; then bob's own message arrives late, by id.
        say(alice, "right now")  # id 5
        expect(message(bob, "right now")).to_have_class(re.compile(r"\bcontinued\b"))
        relay.hold = {6}
        say(bob, "bob in between")  # id 6, its echo held back
        expect(message(bob, "bob in between")).to_have_class(re.compile(r"\bpending\b"))
        say(alice, "alice after")  # id 7, shown before bob's pending one
        expect(message(bob, "alice after")).to_have_class(re.compile(r"\bcontinued\b"))
        relay.release(6)
        expect(texts(bob)).to_have_text(
            [
                "three days ago",
                "yesterday one",
                "yesterday two",
                links,
                "right now",
                "bob in between",
                "alice after",
            ]
        )
        expect(message(bob, "alice after")).not_to_have_class(re.compile(r"\bcontinued\b"))
        assert names_seen(bob)[-2:] == ["You", "Alice"]
        expect(message(bob, "bob in between").locator(".sender")).to_have_text("You")

        # "Sent" once, on the newest confirmed one; a pending one shows its own state.
        say(bob, "bob two")
        say(bob, "bob three")
        expect(bob.locator(".message.pending")).to_have_count(0)
        expect(bob.locator(".mark:visible")).to_have_text(["Sent"])
        expect(message(bob, "bob three")).to_have_class(re.compile(r"\blatest-sent\b"))
        relay.hold = {10}
        say(bob, "bob four")
        four = message(bob, "bob four")
        expect(four).to_have_class(re.compile(r"\bcontinued\b"))
        assert names_seen(bob)[-1] == "You"  # "bob in between" starts the group
        expect(bob.locator(".mark:visible")).to_have_text(["Sent", "Sending…"])

        # A clear removes the group's start: the pending one starts its own, under a date.
        alice.locator("summary", has_text="Menu").click()
        alice.get_by_role("button", name="Clear history…").click()
        alice.get_by_role("button", name="Clear for everyone").click()
        expect(texts(bob)).to_have_text(["bob four"])
        expect(four).not_to_have_class(re.compile(r"\bcontinued\b"))
        assert names_seen(bob) == ["You"]
        expect(bob.locator(".day-divider")).to_have_text(["Today"])
        relay.release(10)
        expect(bob.locator(".mark:visible")).to_have_text(["Sent"])
        expect(bob.locator("a[href^='javascript'], a[href^='data']")).to_have_count(0)

        # Past midnight, with the page left open, today becomes yesterday.
        bob.clock.fast_forward(bob.evaluate("new Date().setHours(24, 0, 0, 0) - Date.now() + 2000"))
        expect(bob.locator(".day-divider")).to_have_text(["Yesterday"])

    await run_in_browser(server.base, scenario, allow=(SOCKET_REFUSED,))


async def test_unread_divider_and_notifications_while_hidden_on_a_phone(
    server: ServerHandle,
) -> None:
    """Opt-in notifications with no plaintext unless previews are on; the divider goes once seen."""

    def scenario(session: Session) -> None:
        alice, link = create_room(session)
        set_name(alice, "Alice")
        bob = session.new_page(**PHONE)
        bob.context.add_init_script(CAPTURE)
        bob.goto(link)
        wait_connected(session, bob, 1)
        for n in range(12):  # enough to make the list scroll on a phone
            say(alice, f"filler {n}\nand its second line")
        expect(texts(bob)).to_have_count(12)
        assert bob.locator(".scroller").evaluate("s => s.scrollHeight > s.clientHeight + 100")

        def notes() -> list[dict[str, str]]:
            shown: list[dict[str, str]] = bob.evaluate("window.__notes")
            return shown

        # Asked only on request; headless Chromium says no, and the page says so.
        bob.locator("summary", has_text="Menu").click()
        bob.get_by_role("button", name="Notifications…").click()
        desktop = bob.get_by_label("Desktop notifications")
        expect(desktop).not_to_be_checked()
        assert bob.evaluate("window.__asked") == 0
        desktop.click()
        expect(desktop).not_to_be_checked()
        expect(bob.locator(".notify-status")).to_contain_text("This browser blocks notifications")
        assert bob.evaluate("window.__asked") == 1
        bob.context.grant_permissions(["notifications"], origin=server.base)
        desktop.click()
        expect(desktop).to_be_checked()
        expect(bob.get_by_label("Show the sender and text in notifications")).not_to_be_checked()
        bob.get_by_label("Play a short sound").click()
        bob.get_by_role("button", name="Done").click()
        expect(bob.locator("summary", has_text="Menu")).to_be_focused()

        # Our own id, from another tab of this browser: never a notification.
        set_hidden(bob, True)
        other = bob.context.new_page()
        other.goto(bob.url)
        say(other, "from my other tab")
        expect(texts(bob).last).to_have_text("from my other tab")
        assert notes() == []
        other.close()

        # Alice while hidden: the title counts, a notification names the room only.
        say(alice, "the secret plan")
        expect(texts(bob).last).to_have_text("the secret plan")
        expect(bob).to_have_title("(1) securechat")
        # The room is named by its fingerprint words, which everyone with the link sees.
        words = bob.locator(".fingerprint.compact .fp-words").inner_text()
        session.wait_until(bob, lambda: len(notes()) == 1, "a notification")
        assert notes() == [{"title": f"New message in “{words}”", "body": "1 unread message"}]
        assert bob.evaluate("window.__tones") >= 1
        say(alice, "more of it")
        expect(texts(bob).last).to_have_text("more of it")
        assert "secret" not in json.dumps(notes())
        assert "Alice" not in json.dumps(notes())
        # The divider stands above the first message that came while hidden.
        divider = bob.locator(".unread-divider")
        expect(divider).to_have_count(1)
        assert divider.evaluate("d => d.nextElementSibling.textContent").endswith("the secret plan")
        assert below_view(bob) < 2  # the divider came with the message: still followed

        # Back: the title resets; the divider stays until bob writes.
        set_hidden(bob, False)
        expect(bob).to_have_title(re.compile(r"^Chat · securechat$"))
        expect(divider).to_have_count(1)
        say(bob, "I am back")
        expect(divider).to_have_count(0)

        # Previews on: who and what, by choice. Shown a few seconds, the divider goes.
        bob.locator("summary", has_text="Menu").click()
        bob.get_by_role("button", name="Notifications…").click()
        expect(bob.get_by_label("Desktop notifications")).to_be_checked()
        expect(bob.get_by_label("Play a short sound")).to_be_checked()
        bob.get_by_label("Show the sender and text in notifications").click()
        bob.get_by_role("button", name="Done").click()
        set_hidden(bob, True)
        say(alice, "round two")
        session.wait_until(bob, lambda: len(notes()) == 2, "a second notification")
        assert notes()[1]["body"].startswith("Alice (")
        assert notes()[1]["body"].endswith("): round two")
        for n in range(6):  # more than a screen while away
            say(alice, "\n".join(f"screenful {n}, line {k}" for k in range(6)))
        expect(texts(bob).last).to_contain_text("screenful 5")
        expect(divider).to_have_count(1)
        expect(divider).not_to_be_in_viewport()
        shown = len(notes())
        # Back: the list goes up to where the new messages start, then the divider goes.
        set_hidden(bob, False)
        expect(divider).to_be_in_viewport()
        expect(bob.get_by_role("button", name="New messages ↓")).to_be_hidden()
        expect(divider).to_have_count(0)
        # Visible: no notification, no divider.
        say(alice, "while looking")
        expect(texts(bob).last).to_have_text("while looking")
        expect(divider).to_have_count(0)
        assert len(notes()) == shown

        # The settings are kept in the room record.
        bob.reload()
        wait_connected(session, bob, 2)
        stored = bob.evaluate(
            """async () => {
              const store = await import("/store.js");
              const roomId = location.pathname.split("/").pop();
              return (await store.loadRoom(roomId)).notifications;
            }"""
        )
        assert stored == {"desktop": True, "previews": True, "sound": True}

    await run_in_browser(server.base, scenario, allow=(SOCKET_REFUSED,))
