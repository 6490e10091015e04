"""The browser client in a real headless Chromium against a real server.

Each test runs one scenario in a worker thread (see tests/browser.py) while an
in-process server on an ephemeral port records everything it receives. Every
scenario ends with no CSP or Trusted Types violation, no uncaught exception and
no unexpected console error.
"""

import json
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import pytest
import trio
from playwright.sync_api import Page, expect

from securechat.peer.b64 import b64url_decode
from securechat.peer.keys import RoomKeys
from securechat.protocol import RoomId
from tests.browser import Recorded, Session, install_recorder, require_chromium, run_in_browser
from tests.harness import (
    ServerHandle,
    b64url,
    joined_peer,
    make_config,
    new_room_id,
    new_token,
    start_server,
)

pytestmark = pytest.mark.slow

ROOT: Final = Path(__file__).resolve().parent.parent
VECTORS: Final = json.loads((ROOT / "tests" / "vectors.json").read_text(encoding="utf-8"))
SCREENSHOT: Final = ROOT / "docs" / "screenshot.png"
PHONE_SCREENSHOT: Final = ROOT / "docs" / "screenshot-phone.png"
# Chromium logs a refused WebSocket while the server is down; that is expected there.
SOCKET_REFUSED: Final = r"^WebSocket connection to 'ws://127\.0\.0\.1:\d+/ws/[^']*' failed"


@dataclass
class Served:
    server: ServerHandle
    recorded: Recorded


@pytest.fixture
async def served(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Served]:
    require_chromium()
    recorded = install_recorder(monkeypatch)
    server = await start_server(nursery, make_config(tmp_path / "data"))
    yield Served(server, recorded)
    await server.stop()


# ----- steps a person takes (run in the browser thread) ------------------------------


def create_room(session: Session) -> tuple[Page, str]:
    """Open /new_chat, read the invite link, enter the room."""
    page = session.new_page()
    page.goto("/new_chat")
    link = page.locator("#invite-link").input_value()
    page.get_by_role("button", name="Enter the room").click()
    wait_connected(session, page, 1)
    return page, link


def join(session: Session, link: str, **options: Any) -> Page:
    page = session.new_page(**options)
    page.goto(link)
    wait_connected(session, page, 1)
    return page


def wait_connected(session: Session, page: Page, times: int) -> None:
    """Wait for the page's ``times``-th successful join, then for the page to show it."""
    log = session.log(page)
    session.wait_until(page, lambda: log.connected >= times, f"connection #{times}")
    expect(page.locator(".status")).to_have_attribute("data-state", "open")


def say(page: Page, text: str) -> None:
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")


def set_name(page: Page, name: str) -> None:
    page.locator("summary", has_text="Menu").click()
    page.get_by_role("button", name="Your name…").click()
    page.get_by_label("Display name").fill(name)
    page.get_by_role("button", name="Save").click()


def texts(page: Page) -> Any:
    return page.locator(".message .text")


def all_sent(page: Page) -> None:
    expect(page.locator(".message.pending")).to_have_count(0)


def stored_record(page: Page) -> dict[str, Any]:
    """The room's IndexedDB record as the page sees it, and whether its key exports."""
    result: dict[str, Any] = page.evaluate(
        """async (roomId) => {
          const db = await new Promise((resolve, reject) => {
            const req = indexedDB.open("secure_chat_keys");
            req.onsuccess = () => resolve(req.result);
            req.onerror = () => reject(req.error);
          });
          const record = await new Promise((resolve, reject) => {
            const req = db.transaction("room_keys").objectStore("room_keys").get(roomId);
            req.onsuccess = () => resolve(req.result);
            req.onerror = () => reject(req.error);
          });
          db.close();
          if (!record) return null;
          let exported = "no error";
          try {
            await crypto.subtle.exportKey("raw", record.key);
          } catch (error) {
            exported = error.name;
          }
          return {
            roomId: record.roomId,
            token: record.token,
            clientId: record.clientId,
            updatedAt: record.updatedAt,
            isCryptoKey: record.key instanceof CryptoKey,
            extractable: record.key.extractable,
            algorithm: record.key.algorithm,
            usages: record.key.usages,
            exported,
            otherStorage: localStorage.length + sessionStorage.length + document.cookie.length,
          };
        }""",
        urlsplit(page.url).path.rsplit("/", 1)[1],
    )
    return result


# ----- scenarios ---------------------------------------------------------------------


async def test_vectors_hold_in_the_pages_own_crypto(served: Served) -> None:
    """docs/protocol.md's test vectors, computed by client/crypto.js inside Chromium."""

    def scenario(session: Session) -> dict[str, Any]:
        page = session.new_page()
        page.goto("/new_chat")
        result: dict[str, Any] = page.evaluate(
            """async (v) => {
              const c = await import("/crypto.js");
              const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
              const secret = c.b64urlDecode(v.secret);
              const { key, token } = await c.deriveRoomKeys(secret, v.roomId);
              const verifier = await crypto.subtle.digest("SHA-256", c.b64urlDecode(token));
              const m = v.message;
              const other = "AAAAAAAAAAAAAAAAAAAAAA";
              const plaintext = JSON.parse(m.plaintext);
              const iv = c.b64urlDecode(m.iv);
              const sealed = await c.sealMessage(key, v.roomId, m.clientId, plaintext, iv);
              return {
                messageKeyHex: hex(await c.hkdfBytes(secret, v.messageKeyInfo)),
                accessTokenHex: hex(await c.hkdfBytes(secret, v.accessTokenInfo)),
                accessToken: token,
                verifierHex: hex(new Uint8Array(verifier)),
                extractable: key.extractable,
                iv: sealed.iv,
                ciphertext: sealed.ciphertext,
                opened: await c.openMessage(key, v.roomId, m.clientId, m.iv, m.ciphertext),
                otherSender: await c.openMessage(key, v.roomId, "mallory", m.iv, m.ciphertext),
                otherRoom: await c.openMessage(key, other, m.clientId, m.iv, m.ciphertext),
                badIv: await c.openMessage(key, v.roomId, m.clientId, "AAAA", m.ciphertext),
              };
            }""",
            VECTORS,
        )
        return result

    result = await run_in_browser(served.server.base, scenario)
    message = VECTORS["message"]
    assert result["messageKeyHex"] == VECTORS["messageKeyHex"]
    assert result["accessTokenHex"] == VECTORS["accessTokenHex"]
    assert result["accessToken"] == VECTORS["accessToken"]
    assert result["verifierHex"] == VECTORS["verifierHex"]
    assert result["extractable"] is False
    assert (result["iv"], result["ciphertext"]) == (message["iv"], message["ciphertext"])
    assert result["opened"] == json.loads(message["plaintext"])
    assert result["otherSender"] is None
    assert result["otherRoom"] is None
    assert result["badIv"] is None


async def test_two_people_chat_and_the_secret_stays_in_the_page(
    served: Served, tmp_path: Path
) -> None:
    """Scenarios 1, 2 and 8: a conversation both ways, names, and where the secret went.

    The pictures of the conversation (Alice's desktop, Bob's phone) go to the test's
    tmp_path, and to docs/screenshot.png and docs/screenshot-phone.png when
    SECURECHAT_UPDATE_SCREENSHOT=1.
    """

    def scenario(session: Session) -> tuple[str, list[str]]:
        alice, link = create_room(session)
        bob = join(session, link)
        set_name(alice, "Alice")
        set_name(bob, "Bob")
        say(alice, "Hi Bob! This room is end-to-end encrypted.")
        expect(texts(bob)).to_have_text(["Hi Bob! This room is end-to-end encrypted."])
        say(bob, "Hi Alice. The server only relays ciphertext?")
        # Keyboard only: Shift+Enter is a new line, Enter sends.
        box = alice.get_by_label("Message", exact=True)
        box.press_sequentially("Right: the key is in the link after the #,")
        box.press("Shift+Enter")
        box.press_sequentially("and it never reaches the server.")
        expect(alice.locator(".counter")).to_have_text("75 / 4000")
        box.press("Enter")
        expect(alice.locator(".counter")).to_have_text("0 / 4000")
        expected = [
            "Hi Bob! This room is end-to-end encrypted.",
            "Hi Alice. The server only relays ciphertext?",
            "Right: the key is in the link after the #,\nand it never reaches the server.",
        ]
        for page, own in ((alice, 2), (bob, 1)):
            expect(texts(page)).to_have_text(expected)
            all_sent(page)
            expect(page.locator(".message.mine")).to_have_count(own)
        expect(bob.locator(".message.theirs .sender").first).to_have_text("Alice")
        expect(alice.locator(".message.theirs .sender")).to_have_text(["Bob"])
        expect(alice.locator(".people .count")).to_have_text("2")

        # While Bob's tab is hidden, new messages count up in its title.
        bob.evaluate(
            """(hidden) => {
              Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
              document.dispatchEvent(new Event("visibilitychange"));
            }""",
            True,
        )
        say(alice, "Still there?")
        expect(bob).to_have_title("(1) securechat")
        bob.evaluate(
            """() => {
              delete document.hidden;
              document.dispatchEvent(new Event("visibilitychange"));
            }"""
        )
        expect(bob).not_to_have_title(re.compile(r"^\(\d+\)"))
        say(bob, "Yes, I was in another tab.")
        expect(texts(alice)).to_have_text([*expected, "Still there?", "Yes, I was in another tab."])
        all_sent(bob)
        alice.wait_for_timeout(300)  # let the last message's entrance finish for the picture
        expect(alice.locator(".message.mine .mark").first).to_have_text("Sent")

        # The secret is gone from the address bar, and the key cannot be read back.
        records = []
        for page in (alice, bob):
            assert "#" not in page.url
            assert re.fullmatch(r".*/room/[A-Za-z0-9_-]{22}", page.url)
            records.append(stored_record(page))
        frames = [frame for page in (alice, bob) for frame in session.log(page).frames_sent]
        headers = [h for page in (alice, bob) for h in session.log(page).request_headers]
        screenshot = alice.screenshot()
        assert screenshot.startswith(b"\x89PNG")
        (tmp_path / "screenshot.png").write_bytes(screenshot)
        # Bob's side on a phone, for the README.
        bob.set_viewport_size({"width": 390, "height": 844})
        expect(texts(bob).last).to_be_in_viewport()
        phone = bob.screenshot()
        (tmp_path / "screenshot-phone.png").write_bytes(phone)
        if os.environ.get("SECURECHAT_UPDATE_SCREENSHOT") == "1":
            SCREENSHOT.write_bytes(screenshot)
            PHONE_SCREENSHOT.write_bytes(phone)
        return link, [json.dumps(records), json.dumps(headers), *frames]

    link, browser_side = await run_in_browser(served.server.base, scenario)
    room_id, secret = urlsplit(link).path.rsplit("/", 1)[1], urlsplit(link).fragment
    records = json.loads(browser_side[0])
    keys = RoomKeys(b64url_decode(secret), RoomId(room_id))
    for record in records:
        assert record["roomId"] == room_id
        assert record["token"] == keys.auth
        assert re.fullmatch(r"[a-z0-9_-]{4,16}", record["clientId"], re.IGNORECASE)
        assert record["isCryptoKey"] is True
        assert record["extractable"] is False
        assert record["exported"] == "InvalidAccessError"
        assert record["algorithm"] == {"name": "AES-GCM", "length": 256}
        assert sorted(record["usages"]) == ["decrypt", "encrypt"]
        assert record["otherStorage"] == 0
    assert records[0]["clientId"] != records[1]["clientId"]

    # Nothing the browser sent and nothing the server received holds the secret.
    for text in browser_side[1:]:
        assert secret not in text
    received = list(served.recorded.everything())
    assert any(line.startswith("websocket /ws/") for line in received)
    assert not [line for line in received if secret in line]
    assert not [line for line in received if line.lower().startswith("referer:")]
    hellos = [json.loads(f) for f in served.recorded.ws_frames if '"hello"' in f]
    assert hellos == [{"type": "hello", "auth": keys.auth}] * 2


async def test_late_joiner_sees_last_ten_and_clear_empties_every_page(served: Served) -> None:
    """Scenarios 3 and 4: history as the server keeps it, then cleared for everyone."""

    def scenario(session: Session) -> None:
        alice, link = create_room(session)
        bob = join(session, link)
        sent = [f"message {n}" for n in range(1, 16)]
        for text in sent:
            say(alice, text)
        expect(texts(alice)).to_have_text(sent)
        all_sent(alice)
        expect(texts(bob)).to_have_text(sent)

        carol = join(session, link)
        expect(texts(carol)).to_have_text(sent[-10:])
        expect(carol.locator(".message.unreadable")).to_have_count(0)

        bob.locator("summary", has_text="Menu").click()
        bob.get_by_role("button", name="Clear history…").click()
        bob.get_by_role("button", name="Clear for everyone").click()
        for page in (alice, bob, carol):
            expect(page.locator(".message")).to_have_count(0)
        expect(alice.locator(".system").last).to_contain_text("cleared the history")
        alice.reload()
        wait_connected(session, alice, 2)
        expect(alice.locator(".empty")).to_be_visible()
        expect(alice.locator(".message")).to_have_count(0)

    await run_in_browser(served.server.base, scenario)


async def test_pages_reconnect_after_a_restart_without_duplicates(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Scenario 5: the server stops and comes back on the same port and data dir."""
    require_chromium()
    handles = [await start_server(nursery, make_config(tmp_path / "data"))]
    first = handles[0]

    async def stop() -> None:
        await handles[-1].stop()

    async def start() -> None:
        handles.append(await start_server(nursery, replace(first.config, port=first.port)))

    def scenario(session: Session) -> None:
        alice, link = create_room(session)
        bob = join(session, link)
        say(alice, "before the restart")
        expect(texts(bob)).to_have_text(["before the restart"])
        all_sent(alice)

        trio.from_thread.run(stop)
        expect(alice.locator(".status")).not_to_have_attribute("data-state", "open")
        expect(alice.locator(".status")).to_contain_text("Disconnected")
        say(alice, "written while offline")
        expect(alice.locator(".message.pending")).to_have_count(1)
        trio.from_thread.run(start)

        for page in (alice, bob):
            wait_connected(session, page, 2)
        say(bob, "after the restart")
        expected = ["before the restart", "written while offline", "after the restart"]
        for page in (alice, bob):
            expect(texts(page)).to_have_text(expected)
            all_sent(page)
            mids = page.locator(".message").evaluate_all("els => els.map(e => e.dataset.mid)")
            assert len(set(mids)) == len(expected)

    try:
        await run_in_browser(first.base, scenario, allow=(SOCKET_REFUSED,))
    finally:
        await handles[-1].stop()


async def test_wrong_secret_is_explained_and_not_retried(served: Served) -> None:
    """Scenario 6, and the other plain-words problems: no key, a damaged link."""

    def scenario(session: Session) -> None:
        _, link = create_room(session)
        room_path = urlsplit(link).path
        wrong = session.new_page()
        wrong.goto(f"{room_path}#{b64url(os.urandom(32))}")
        # A full-page explanation, like a damaged link: not a line over an empty chat.
        expect(wrong.locator("h1")).to_have_text("This link's key does not match this room")
        expect(wrong.locator("body")).to_have_attribute("data-state", "problem")
        expect(wrong.locator("body")).to_have_attribute("data-close-code", "4401")
        expect(wrong.locator(".status, .composer")).to_have_count(0)
        # It does not try again: not by itself, nor when the tab or network comes back.
        wrong.evaluate(
            """() => {
              document.dispatchEvent(new Event("visibilitychange"));
              window.dispatchEvent(new Event("online"));
            }"""
        )
        wrong.wait_for_timeout(1500)
        assert len(session.log(wrong).sockets) == 1
        wrong.get_by_role("button", name="Forget this room").click()
        wrong.get_by_role("dialog").get_by_role("button", name="Forget this room").click()
        expect(wrong.locator("h1")).to_have_text("Room forgotten")
        assert stored_record(wrong) is None

        stranger = session.new_page()
        stranger.goto(room_path)
        expect(stranger.locator("h1")).to_have_text("This room's key is missing")
        stranger.goto(f"{room_path}#not-a-key")
        expect(stranger.locator("h1")).to_have_text("This link is damaged")
        assert "#" not in stranger.url
        assert session.log(stranger).sockets == []

    await run_in_browser(served.server.base, scenario)


async def test_a_full_room_is_explained_and_reconnects_on_request(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Close code 4409: said in plain words; the Try now button tries again at once."""
    require_chromium()
    server = await start_server(nursery, make_config(tmp_path / "data", max_participants=1))

    def scenario(session: Session) -> None:
        alice, link = create_room(session)
        bob = session.new_page()
        bob.goto(link)
        expect(bob.locator(".status")).to_have_attribute("data-state", "waiting")
        expect(bob.locator(".status")).to_contain_text("This room is full")
        alice.close()
        log = session.log(bob)

        def try_again() -> bool:
            # The server may not have seen Alice leave yet: then it is full once more.
            button = bob.get_by_role("button", name="Try now")
            if not log.connected and button.is_visible():
                button.click()
            return log.connected == 1

        session.wait_until(bob, try_again, "a place in the room")
        wait_connected(session, bob, 1)

    try:
        await run_in_browser(server.base, scenario)
    finally:
        await server.stop()


async def test_a_server_with_full_storage_says_so_and_waits(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Close code 4507: a new room on a full server is explained, and retried slowly."""
    require_chromium()
    server = await start_server(nursery, make_config(tmp_path / "data", max_stored_rooms=1))
    await joined_peer(nursery, server, new_room_id(), new_token())  # fills the quota

    def scenario(session: Session) -> None:
        page = session.new_page()
        page.goto("/new_chat")
        page.get_by_role("button", name="Enter the room").click()
        status = page.locator(".status")
        expect(status).to_have_attribute("data-state", "waiting")
        expect(status).to_contain_text("storage is full")
        expect(status).to_contain_text("Rooms that exist still work")

    try:
        await run_in_browser(server.base, scenario)
    finally:
        await server.stop()


async def test_refused_storage_keeps_the_key_for_the_tab(served: Served) -> None:
    """IndexedDB refused (a private window): the room still works, and says so."""
    refuse = "IDBFactory.prototype.open = () => { throw new DOMException('no', 'SecurityError'); };"

    def scenario(session: Session) -> None:
        _, link = create_room(session)
        page = session.new_page()
        page.context.add_init_script(refuse)
        page.goto(link)
        wait_connected(session, page, 1)
        assert "#" not in page.url
        expect(page.locator(".notice")).to_contain_text("kept in this tab only")
        say(page, "still works")
        expect(page.locator(".message.mine .mark")).to_have_text(["Sent"])

    await run_in_browser(served.server.base, scenario)


async def test_forget_the_room_and_pages_without_what_they_need(served: Served) -> None:
    """Forgetting deletes the record; no WebCrypto or no JavaScript gets a plain answer."""

    def scenario(session: Session) -> None:
        page, link = create_room(session)
        page.locator("summary", has_text="Menu").click()
        page.get_by_role("button", name="Forget this room…").click()
        page.get_by_role("dialog").get_by_role("button", name="Forget this room").click()
        expect(page.locator("h1")).to_have_text("Room forgotten")
        assert stored_record(page) is None
        page.goto(urlsplit(link).path)
        expect(page.locator("h1")).to_have_text("This room's key is missing")

        insecure = session.new_page()
        insecure.context.add_init_script(
            "Object.defineProperty(window, 'isSecureContext', { value: false });"
        )
        insecure.goto("/new_chat")
        expect(insecure.locator("h1")).to_have_text("This page needs a secure connection")
        expect(insecure.locator("body")).to_contain_text("HTTPS, a .onion address, or localhost")

        off = session.new_page(java_script_enabled=False)
        off.goto(urlsplit(link).path)
        expect(off.locator("noscript h1, .noscript h1")).to_have_text("This chat needs JavaScript")

    await run_in_browser(served.server.base, scenario)
