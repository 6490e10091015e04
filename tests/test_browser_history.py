"""History beyond the server's cap, a full room, and messages the server never echoed.

In a real Chromium against the real server (tests/browser.py): the local cache
in IndexedDB (client/cache.js) and the notice when older messages are gone
(client/history.js); close 4409 retried on its own with queued messages
(client/protocol.js); "Not delivered" with Retry and Delete (client/pending.js),
with a server that really never saw one frame. Every scenario ends with no CSP
or Trusted Types violation and no console error.
"""

import json
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import pytest
import trio
from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    Scope,
)
from playwright.sync_api import Page, WebSocketRoute, expect

from securechat.headers import SecurityHeaders
from tests.browser import Session, require_chromium, run_in_browser
from tests.harness import ServerHandle, make_config, start_server
from tests.test_browser import (
    SOCKET_REFUSED,
    all_sent,
    create_room,
    join,
    say,
    texts,
    wait_connected,
)

# ``server`` is conftest.py's; these tests need Chromium before it starts.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("needs_chromium")]

NOTICE: Final = "Older messages are not kept on the server: it keeps the last 10."
ECHO_TIMEOUT_MS: Final = 15_000  # client/pending.js
FULL_WAIT_MS: Final = 30_000  # two full-room retries at most (2.5-5 s, then 5-10 s), with margin

# The cache's records for a room as the page sees them: their ids, IV lengths and
# whether the stored bytes contain the word every test message has. The database
# is opened only if the page made it (opening it here would make an empty one).
CACHED_JS: Final = """async (roomId) => {
  const names = (await indexedDB.databases()).map((d) => d.name);
  if (!names.includes("securechat_cache")) return [];
  const db = await new Promise((resolve, reject) => {
    const req = indexedDB.open("securechat_cache");
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  const range = IDBKeyRange.bound([roomId, -Infinity], [roomId, Infinity]);
  const records = await new Promise((resolve, reject) => {
    const req = db.transaction("messages").objectStore("messages").getAll(range);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  db.close();
  const decoder = new TextDecoder();
  return records.map((r) => ({
    id: r.id,
    iv: Array.from(r.iv).join(","),
    plain: decoder.decode(r.data).includes("message"),
  }));
}"""


def cached(page: Page, room_id: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = page.evaluate(CACHED_JS, room_id)
    return records


def room_id_of(link: str) -> str:
    return urlsplit(link).path.rsplit("/", 1)[1]


def clear_history(page: Page) -> None:
    page.locator("summary", has_text="Menu").click()
    page.get_by_role("button", name="Clear history…").click()
    page.get_by_role("button", name="Clear for everyone").click()


def forget(page: Page) -> None:
    page.locator("summary", has_text="Menu").click()
    page.get_by_role("button", name="Forget this room…").click()
    page.get_by_role("dialog").get_by_role("button", name="Forget this room").click()


async def test_a_reload_keeps_what_was_seen_and_says_what_the_server_lost(
    server: ServerHandle,
) -> None:
    """14 messages, a server that keeps 10: the cache, the notice, clear and forget."""

    def scenario(session: Session) -> None:
        alice, link = create_room(session)
        room_id = room_id_of(link)
        sent = [f"message {n}" for n in range(1, 15)]
        for text in sent:
            say(alice, text)
        expect(texts(alice)).to_have_text(sent)
        all_sent(alice)
        session.wait_until(alice, lambda: len(cached(alice, room_id)) == 14, "14 cached")
        records = cached(alice, room_id)
        assert [r["id"] for r in records] == list(range(1, 15))
        assert len({r["iv"] for r in records}) == 14  # a fresh IV per entry
        assert not [r for r in records if r["plain"]]  # encrypted at rest

        # A reload: the cache first, then the server's last 10, each message once.
        alice.reload()
        wait_connected(session, alice, 2)
        expect(texts(alice)).to_have_text(sent)
        mids = alice.locator(".message").evaluate_all("els => els.map(e => e.dataset.mid)")
        assert len(set(mids)) == 14
        expect(alice.locator(".history-gap")).to_have_count(0)
        expect(alice.locator(".message.mine .mark")).to_have_text(["Sent"] * 14)

        # A fresh browser has no cache: the notice, at the top, and the last 10.
        bob = join(session, link)
        expect(texts(bob)).to_have_text(sent[-10:])
        notice = bob.locator(".messages > li").first
        expect(notice).to_have_text(NOTICE)
        session.wait_until(bob, lambda: len(cached(bob, room_id)) == 10, "10 cached")
        bob.reload()  # what bob kept does not reach back either
        wait_connected(session, bob, 2)
        expect(texts(bob)).to_have_text(sent[-10:])
        expect(bob.locator(".history-gap")).to_have_text(NOTICE)

        # history.cap, where the server sends it: a history below the cap lost
        # nothing to the cap (what is older was cleared), so no notice.
        carol = session.new_page()
        caps = [12]

        def with_cap(ws: WebSocketRoute) -> None:
            upstream = ws.connect_to_server()

            def from_server(frame: str | bytes) -> None:
                if isinstance(frame, str) and '"type":"history"' in frame:
                    frame = json.dumps({**json.loads(frame), "cap": caps[-1]})
                ws.send(frame)

            upstream.on_message(from_server)

        carol.route_web_socket(re.compile(r"/ws/"), with_cap)
        carol.goto(link)
        wait_connected(session, carol, 1)
        expect(texts(carol)).to_have_text(sent[-10:])
        expect(carol.locator(".history-gap")).to_have_count(0)
        caps.append(10)
        carol.reload()
        wait_connected(session, carol, 2)
        expect(carol.locator(".history-gap")).to_have_text(NOTICE)

        # A clear deletes every page's cache: a reload shows nothing.
        clear_history(bob)
        for page in (alice, bob):
            expect(page.locator(".message")).to_have_count(0)
            expect(page.locator(".history-gap")).to_have_count(0)

            def emptied(page: Page = page) -> bool:
                return cached(page, room_id) == []

            session.wait_until(page, emptied, "cache cleared")
        alice.reload()
        wait_connected(session, alice, 3)
        expect(alice.locator(".empty")).to_be_visible()
        expect(alice.locator(".message")).to_have_count(0)

        # Forgetting the room deletes its cache too.
        say(alice, "message after the clear")
        expect(texts(bob)).to_have_text(["message after the clear"])
        session.wait_until(alice, lambda: len(cached(alice, room_id)) == 1, "1 cached")
        forget(alice)
        expect(alice.locator("h1")).to_have_text("Room forgotten")
        assert cached(alice, room_id) == []
        assert len(cached(bob, room_id)) == 1  # another browser's cache is its own

    await run_in_browser(server.base, scenario, allow=(SOCKET_REFUSED,))


async def test_a_full_room_queues_and_lets_the_page_in_on_its_own(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Close 4409: said plainly, messages queued, retried with backoff until a place is free."""
    require_chromium()
    server = await start_server(nursery, make_config(tmp_path / "data", max_participants=2))

    def scenario(session: Session) -> None:
        alice, link = create_room(session)
        bob = join(session, link)
        carol = session.new_page()
        carol.goto(link)
        status = carol.locator(".status")
        expect(status).to_have_attribute("data-state", "waiting")
        expect(status).to_contain_text("This room is full. This page will try again on its own…")
        expect(status).to_contain_text("Trying again in")
        expect(carol.get_by_role("button", name="Try now")).to_be_visible()
        expect(carol.locator("body")).to_have_attribute("data-close-code", "4409")
        say(carol, "waiting outside")
        expect(carol.locator(".message.mine .mark")).to_have_text(["Queued"])
        expect(carol.locator(".message.mine")).to_have_attribute("data-delivery", "queued")

        bob.close()  # a place comes free; carol is not told, and finds it by herself
        log = session.log(carol)
        for _ in range(FULL_WAIT_MS // 100):
            if log.connected:
                break
            carol.wait_for_timeout(100)
        assert log.connected == 1
        wait_connected(session, carol, 1)
        expect(texts(alice)).to_have_text(["waiting outside"])
        expect(carol.locator(".message.mine .mark")).to_have_text(["Sent"])
        assert len(log.sockets) >= 2

    try:
        await run_in_browser(server.base, scenario)
    finally:
        await server.stop()


class Dropper:
    """Makes the server never receive the next client ``message`` frame, when asked."""

    def __init__(self) -> None:
        self.armed = threading.Event()  # set from the browser thread
        self.dropped = 0

    def wrap(self, app: ASGIFramework) -> Callable[..., Any]:
        async def dropping(
            scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
        ) -> None:
            async def dropping_receive() -> ASGIReceiveEvent:
                while True:
                    event = await receive()
                    text = event.get("text") if event["type"] == "websocket.receive" else None
                    if text and '"type":"message"' in text and self.armed.is_set():
                        self.armed.clear()
                        self.dropped += 1
                        continue  # lost on the way: no store, no relay, no echo
                    return event

            await app(scope, dropping_receive, send)

        return dropping


async def test_a_message_the_server_never_echoed_is_not_delivered_with_retry(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No echo within the timeout: "Not delivered"; Retry delivers it once; Delete drops it."""
    require_chromium()
    dropper = Dropper()
    monkeypatch.setattr(
        "securechat.server.SecurityHeaders", lambda app: SecurityHeaders(dropper.wrap(app))
    )
    server = await start_server(nursery, make_config(tmp_path / "data"))

    def scenario(session: Session) -> None:
        alice = session.new_page()
        alice.clock.install()  # time runs as usual; the test may jump it forward
        alice.goto("/new_chat")
        link = alice.locator("#invite-link").input_value()
        alice.get_by_role("button", name="Enter the room").click()
        wait_connected(session, alice, 1)
        bob = join(session, link)
        mine = alice.locator(".message.mine")

        dropper.armed.set()
        say(alice, "lost once")
        expect(mine.locator(".mark")).to_have_text(["Sending…"])
        session.wait_until(alice, lambda: dropper.dropped == 1, "the frame dropped")
        alice.clock.fast_forward(ECHO_TIMEOUT_MS + 1000)
        expect(mine).to_have_attribute("data-delivery", "failed")
        expect(mine.locator(".mark")).to_contain_text("Not delivered")
        retry = mine.get_by_role("button", name="Retry")
        retry.click()
        expect(mine.locator(".mark")).to_have_text(["Sent"])
        expect(texts(bob)).to_have_text(["lost once"])

        dropper.armed.set()
        say(alice, "never mind")
        session.wait_until(alice, lambda: dropper.dropped == 2, "the frame dropped")
        alice.clock.fast_forward(ECHO_TIMEOUT_MS + 1000)
        failed = alice.locator('.message[data-delivery="failed"]')
        expect(failed).to_have_count(1)
        failed.get_by_role("button", name="Delete").click()
        expect(texts(alice)).to_have_text(["lost once"])
        say(bob, "still here")
        for page in (alice, bob):
            expect(texts(page)).to_have_text(["lost once", "still here"])
        all_sent(alice)
        expect(alice.get_by_label("Message", exact=True)).to_be_focused()

    try:
        await run_in_browser(server.base, scenario)
    finally:
        await server.stop()
