"""Interop in a real Chromium: the browser client and ``securechat chat/send/tail`` in one
room read each other's messages, names included; and the browser's crypto reproduces
tests/vectors.json like the Python client does.

Playwright's sync API blocks, so the browser side runs in one worker thread
(``trio.to_thread.run_sync``) and calls back into Trio (``trio.from_thread.run``)
for the command-line steps. Every Playwright step has its own timeout.
"""

import json
import os
import shutil
from pathlib import Path
from typing import Final

import pytest
import trio

from securechat.peer.link import new_link
from tests.harness import ServerHandle
from tests.test_peer_cli import Lines, run, started, type_line

CHROMIUM: Final = "/usr/bin/chromium"
CHROMIUM_ARGS: Final = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
STEP_MS: Final = 10_000  # any one browser step
VECTORS: Final = json.loads(Path(__file__).with_name("vectors.json").read_text(encoding="utf-8"))
ROOT: Final = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def need_browser() -> None:
    """Skip loudly without Chromium or Playwright, except in CI where it must be there."""
    problem = None
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        problem = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "Playwright for Python is not installed"
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser interop cannot run in CI: {problem}")
    pytest.skip(f"SKIPPED BROWSER INTEROP: {problem}")


async def test_browser_and_terminal_share_a_room(server: ServerHandle, env: dict[str, str]) -> None:
    need_browser()
    from playwright.sync_api import expect, sync_playwright

    link = str(new_link(server.base))

    async with (
        started(env, "tail", link) as (_, tail),
        started(env, "chat", link, "--name", "Terminal") as (chat, screen),
    ):
        await screen_connected(screen)

        def in_browser() -> None:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    page = browser.new_page()
                    page.set_default_timeout(STEP_MS)
                    expect.set_options(timeout=STEP_MS)
                    page.goto(link)
                    expect(page.locator(".status")).to_have_attribute("data-state", "open")

                    # The browser picks a name, then writes.
                    page.get_by_text("Menu").click()
                    page.get_by_role("button", name="Your name…").click()
                    page.fill("#name-input", "Browser")
                    page.get_by_role("button", name="Save").click()
                    page.fill("#composer-text", "hello from the browser")
                    page.press("#composer-text", "Enter")

                    record = trio.from_thread.run(tail.until, "hello from the browser")
                    assert json.loads(record)["name"] == "Browser"
                    shown = trio.from_thread.run(screen.until, "hello from the browser")
                    assert "Browser (" in shown

                    # The terminal writes back, by ``send`` and from ``chat``.
                    sent = trio.from_thread.run(
                        lambda: run(env, "send", link, "hello from send", "--client-id",
                                    "sender1", "--name", "Script")
                    )  # fmt: skip
                    assert sent.returncode == 0, sent
                    from_send = page.locator("li.message", has_text="hello from send")
                    expect(from_send.locator(".sender")).to_have_text("Script")

                    trio.from_thread.run(type_line, chat, "hello from chat")
                    from_chat = page.locator("li.message", has_text="hello from chat")
                    expect(from_chat.locator(".sender")).to_have_text("Terminal")

                    # The browser's crypto gives the same vectors as the Python client.
                    assert (
                        page.evaluate(BROWSER_VECTORS, VECTORS) == VECTORS["message"]["ciphertext"]
                    )
                finally:
                    browser.close()

        with trio.fail_after(60):
            await trio.to_thread.run_sync(in_browser)


async def screen_connected(screen: Lines) -> None:
    await screen.until("* connected as")


BROWSER_VECTORS: Final = """
async (v) => {
  const c = await import("/crypto.js");
  const { key } = await c.deriveRoomKeys(c.b64urlDecode(v.secret), v.roomId);
  const m = v.message;
  const sealed = await c.sealMessage(
    key, v.roomId, m.clientId, JSON.parse(m.plaintext), c.b64urlDecode(m.iv));
  return sealed.ciphertext;
}
"""
