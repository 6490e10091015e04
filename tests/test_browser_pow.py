"""The page's proof of work in Chromium: its SHA-256, the vectors, a room made under pressure."""

import json
from pathlib import Path
from typing import Any, Final

import pytest
import trio
from playwright.sync_api import expect

from securechat.budget import BASE_BITS, MAX_BITS
from tests.browser import Session, require_chromium, run_in_browser
from tests.harness import joined_peer, make_config, new_room_id, new_token, start_server
from tests.test_browser import create_room, join, say, texts, wait_connected

pytestmark = pytest.mark.slow

VECTORS: Final = json.loads(
    (Path(__file__).resolve().parent / "vectors.json").read_text(encoding="utf-8")
)
# Records every text the status region shows, before any script of the page runs.
STATUS_WATCH: Final = """
window.__statuses = [];
new MutationObserver(() => {
  const status = document.querySelector(".status [role=status]");
  const text = status ? status.textContent : null;
  if (text && window.__statuses.at(-1) !== text) window.__statuses.push(text);
}).observe(document, { subtree: true, childList: true, characterData: true });
"""


async def test_the_pages_sha256_and_solver_match_webcrypto_and_the_vectors(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    require_chromium()
    server = await start_server(nursery, make_config(tmp_path / "data"))

    def scenario(session: Session) -> dict[str, Any]:
        page = session.new_page()
        page.goto("/new_chat")
        result: dict[str, Any] = page.evaluate(
            """async ({ v, maxBits }) => {
              const pow = await import("/pow.js");
              const { b64urlDecode, b64urlEncode } = await import("/crypto.js");
              const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
              const mismatches = [];
              for (const n of [0, 1, 24, 55, 56, 63, 64, 65, 119, 120, 1000, 4097]) {
                const bytes = crypto.getRandomValues(new Uint8Array(n));
                const mine = hex(pow.sha256(bytes));
                const theirs = hex(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)));
                if (mine !== theirs) mismatches.push(n);
              }
              const challenge = b64urlDecode(v.challenge);
              const found = v.found.map((f) => {
                const { found } = pow.searchSome(challenge, f.bits, 0, 1 << 24);
                const nonce = pow.nonceBytes(found);
                const joined = new Uint8Array([...challenge, ...nonce]);
                const digestHex = hex(pow.sha256(joined));
                return { counter: found, nonce: b64urlEncode(nonce), digestHex };
              });
              // Speed, and that the page keeps drawing while it works.
              const n = 1 << 19;
              let t = performance.now();
              pow.searchSome(challenge, 64, 0, n);
              const hashesPerSecond = n / ((performance.now() - t) / 1000);
              const frames = [];
              let drawing = true;
              const frame = () => {
                frames.push(performance.now());
                if (drawing) requestAnimationFrame(frame);
              };
              requestAnimationFrame(frame);
              t = performance.now();
              const nonce = await pow.solve(crypto.getRandomValues(new Uint8Array(16)), 18);
              const solveMs = performance.now() - t;
              drawing = false;
              const ticks = frames.filter((x) => x >= t);
              const times = [t, ...ticks, performance.now()];
              const longestGapMs = Math.max(...times.slice(1).map((x, i) => x - times[i]));
              let refused = null;
              try {
                await pow.solve(challenge, maxBits + 100);
              } catch (error) {
                refused = error.message;
              }
              const nonceLength = nonce.length;
              return {
                mismatches, found, hashesPerSecond, longestGapMs, solveMs, nonceLength, refused,
              };
            }""",
            {"v": VECTORS["proof"], "maxBits": MAX_BITS},
        )
        return result

    try:
        result = await run_in_browser(server.base, scenario)
    finally:
        await server.stop()
    assert result["mismatches"] == []
    expected = [
        {k: f[k] for k in ("counter", "nonce", "digestHex")} for f in VECTORS["proof"]["found"]
    ]
    assert result["found"] == expected
    assert result["nonceLength"] == 8
    assert "too much work" in result["refused"]
    # Not frozen: while it solved (18 bits, some 260k hashes) the page kept drawing
    # frames; slices are 25 ms, so a gap of 250 ms is a wide margin.
    assert result["longestGapMs"] < 250, result
    print(f"\nChromium: {result['hashesPerSecond'] / 1e6:.2f} M SHA-256/s", result)


async def test_a_room_made_under_pressure_shows_the_step_and_then_chats(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    require_chromium()
    server = await start_server(
        nursery, make_config(tmp_path / "data", new_rooms_per_minute=0.01, new_rooms_burst=1)
    )
    await joined_peer(nursery, server, new_room_id(), new_token())  # spends the burst

    def scenario(session: Session) -> list[str]:
        page = session.new_page()
        page.context.add_init_script(STATUS_WATCH)
        received: list[str] = []
        page.on("websocket", lambda ws: ws.on("framereceived", lambda p: received.append(str(p))))
        page.goto("/new_chat")
        link = page.locator("#invite-link").input_value()
        page.get_by_role("button", name="Enter the room").click()
        wait_connected(session, page, 1)
        statuses: list[str] = page.evaluate("window.__statuses")
        assert "Securing the room…" in statuses
        assert statuses[-1] == "Connected, end-to-end encrypted"
        challenges = [json.loads(f) for f in received if '"challenge"' in f]
        assert [c["bits"] for c in challenges] == [BASE_BITS]
        hellos = [json.loads(f) for f in session.log(page).frames_sent if '"hello"' in f]
        assert ["proof" in h for h in hellos] == [False, True]
        # A second person joins the room that exists now: no challenge, and they chat.
        other = join(session, link)
        say(page, "worth the wait")
        expect(texts(other)).to_have_text(["worth the wait"])
        # Another new room, still under pressure: challenged again, and it opens.
        create_room(session)
        return statuses

    try:
        await run_in_browser(server.base, scenario)
    finally:
        await server.stop()
