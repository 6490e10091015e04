"""A real Chromium for the browser tests, driven by Playwright's sync API.

Playwright's sync API blocks, so a whole scenario runs in one worker thread
(``run_in_browser``) while the server keeps running on the Trio loop; the
scenario reaches back into Trio with ``trio.from_thread.run`` (to restart the
server, for example).

Two witnesses watch every scenario:
- the browser side: every page's requests, WebSocket frames sent, console
  errors, uncaught exceptions and ``securitypolicyviolation`` events;
- the server side: ``RecordingApp`` wraps the server's ASGI app and records
  every request's path, query string and headers and every WebSocket frame it
  receives, before the server sees them.
"""

import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import pytest
import trio
from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    Scope,
)
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    WebSocket,
    expect,
    sync_playwright,
)
from playwright.sync_api import Error as PlaywrightError

from securechat.headers import SecurityHeaders

CHROMIUM: Final = os.environ.get("SECURECHAT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS: Final = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STEP_MS: Final = 10_000  # the longest any single browser step may take
# expect() has its own default (5 s); two cores shared with a server and a few
# browser contexts need the same margin as every other step.
expect.set_options(timeout=STEP_MS)

# Runs before any script of every page. Violations are reported through a
# Playwright binding, so that none is lost when a page navigates or reloads.
WATCH_SCRIPT: Final = """
document.addEventListener("securitypolicyviolation", (event) => {
  const where = `${event.sourceFile}:${event.lineNumber}`;
  const what = `${event.effectiveDirective} blocked ${event.blockedURI}`;
  window.__securechatViolation(`${what} at ${where}`);
});
"""

T = TypeVar("T")


def require_chromium() -> None:
    """Skip loudly when Chromium is missing; fail instead when CI=true."""
    if Path(CHROMIUM).exists() or shutil.which(CHROMIUM):
        return
    reason = (
        f"BROWSER TESTS NOT RUN: no Chromium at {CHROMIUM}. "
        "Install Debian's chromium (apt-get install chromium) or run scripts/test."
    )
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


# ----- the server's side ------------------------------------------------------------


@dataclass
class Recorded:
    """What the server received, as it arrived on the socket."""

    requests: list[tuple[str, str, str, list[tuple[str, str]]]] = field(default_factory=list)
    ws_frames: list[str] = field(default_factory=list)

    def everything(self) -> Iterator[str]:
        for kind, path, query, headers in self.requests:
            yield f"{kind} {path}?{query}"
            for name, value in headers:
                yield f"{name}: {value}"
        yield from self.ws_frames


class RecordingApp:
    """An ASGI app that records each request and inbound frame, then passes it on."""

    def __init__(self, app: ASGIFramework, recorded: Recorded) -> None:
        self._app = app
        self._recorded = recorded

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
            query = scope["query_string"].decode("latin-1")
            self._recorded.requests.append((scope["type"], scope["path"], query, headers))

        async def recording_receive() -> ASGIReceiveEvent:
            event = await receive()
            if event["type"] == "websocket.receive":
                text, data = event.get("text"), event.get("bytes")
                frame = text if text is not None else (data or b"").decode("latin-1")
                self._recorded.ws_frames.append(frame)
            return event

        await self._app(scope, recording_receive, send)


def install_recorder(monkeypatch: pytest.MonkeyPatch) -> Recorded:
    """Make servers started after this call record everything they receive.

    The server wraps its app in ``SecurityHeaders``; this wraps the recorder in
    between, so the security headers are unchanged and nothing else is.
    """
    recorded = Recorded()

    def wrap(app: ASGIFramework) -> SecurityHeaders:
        return SecurityHeaders(RecordingApp(app, recorded))

    monkeypatch.setattr("securechat.server.SecurityHeaders", wrap)
    return recorded


# ----- the browser's side -----------------------------------------------------------


@dataclass
class PageLog:
    """Everything one page did that a test may want to check."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    request_headers: list[dict[str, str]] = field(default_factory=list)
    frames_sent: list[str] = field(default_factory=list)
    sockets: list[WebSocket] = field(default_factory=list)
    connected: int = 0  # "connected" envelopes received: one per successful join


class Session:
    """One Chromium; contexts (separate browser profiles) made on demand."""

    def __init__(self, browser: Browser, base: str) -> None:
        self.browser = browser
        self.base = base
        self.violations: list[str] = []
        self.logs: dict[Page, PageLog] = {}
        self.contexts: list[BrowserContext] = []

    def new_page(self, *, width: int = 900, height: int = 700, **options: Any) -> Page:
        """A page in a fresh context: its own IndexedDB, cookies and cache."""
        context = self.browser.new_context(
            viewport={"width": width, "height": height}, base_url=self.base, **options
        )
        context.set_default_timeout(STEP_MS)
        context.expose_function("__securechatViolation", lambda text: self.violations.append(text))
        context.add_init_script(WATCH_SCRIPT)
        self.contexts.append(context)
        page = context.new_page()
        log = PageLog()
        self.logs[page] = log

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                log.console_errors.append(message.text)

        def on_socket(socket: WebSocket) -> None:
            log.sockets.append(socket)

            def on_received(payload: str | bytes) -> None:
                if isinstance(payload, str) and '"event":"connected"' in payload:
                    log.connected += 1

            socket.on("framesent", lambda payload: log.frames_sent.append(str(payload)))
            socket.on("framereceived", on_received)

        page.on("console", on_console)
        page.on("pageerror", lambda error: log.page_errors.append(str(error)))
        page.on("request", lambda request: log.request_headers.append(request.headers))
        page.on("websocket", on_socket)
        return page

    def log(self, page: Page) -> PageLog:
        return self.logs[page]

    def assert_clean(self, *, allow: tuple[str, ...] = ()) -> None:
        """No CSP or Trusted Types violation, no uncaught error, no console error.

        ``allow`` lists regular expressions for console errors a scenario expects
        (a refused WebSocket while the server is down is logged by Chromium).
        """
        assert self.violations == []
        for page, log in self.logs.items():
            assert log.page_errors == [], page.url
            unexpected = [
                text for text in log.console_errors if not any(re.search(a, text) for a in allow)
            ]
            assert unexpected == [], page.url

    def wait_until(self, page: Page, condition: Callable[[], bool], what: str) -> None:
        """Poll a Python-side condition while letting Playwright deliver events."""
        for _ in range(STEP_MS // 50):
            if condition():
                return
            page.wait_for_timeout(50)
        raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def chromium(base: str) -> Iterator[Session]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield Session(browser, base)
        finally:
            with suppress(PlaywrightError):  # already gone: nothing left to release
                browser.close()


async def run_in_browser(
    base: str, scenario: Callable[[Session], T], *, allow: tuple[str, ...] = ()
) -> T:
    """Run ``scenario`` with a fresh Chromium in a worker thread; return its result.

    Afterwards the session must be clean (``Session.assert_clean`` with ``allow``).
    The thread cannot be cancelled from Trio; every Playwright step has its own
    timeout (``STEP_MS``) instead, so a stuck scenario fails rather than hangs.
    """

    def worker() -> T:
        with chromium(base) as session:
            result = scenario(session)
            session.assert_clean(allow=allow)
            return result

    return await trio.to_thread.run_sync(worker)
