"""The room fingerprint (docs/protocol.md section 6): its vector, its word list on both
sides, and ``securechat fingerprint LINK``."""

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Final

from securechat.peer.fingerprint import COLOURS, Fingerprint, link_fingerprint, room_fingerprint
from securechat.peer.keys import hkdf
from securechat.peer.link import new_link, parse_link
from securechat.peer.words import WORDS
from tests.harness import ServerHandle
from tests.test_peer_cli import run

ROOT: Final = Path(__file__).resolve().parent.parent
VECTORS: Final = json.loads((ROOT / "tests" / "vectors.json").read_text(encoding="utf-8"))
# docs/protocol.md section 6, for the vectors' secret and room id.
FINGERPRINT_HEX: Final = "8d1e42e2e987c94fcb7a33e017b41ee71d02cbb10105f18b10fcbc31e1e3d387"
FINGERPRINT: Final = Fingerprint(
    ("jewel", "bell", "coach", "squid"), ("orange", "brown", "orange", "brown")
)


def js_strings(name: str, array_name: str) -> list[str]:
    """The string literals of ``export const <array_name> = Object.freeze([...])`` in client/."""
    source = (ROOT / "client" / name).read_text(encoding="utf-8")
    match = re.search(rf"export const {array_name} = Object\.freeze\(\[(.*?)\]\);", source, re.S)
    assert match is not None
    return re.findall(r'"([^"]*)"', match.group(1))


def test_the_vector_holds() -> None:
    link = parse_link(VECTORS["link"])
    assert hkdf(link.secret, f"fingerprint:{link.room_id}").hex() == FINGERPRINT_HEX
    fingerprint = room_fingerprint(link.secret, link.room_id)
    assert fingerprint == FINGERPRINT
    assert str(fingerprint) == "jewel bell coach squid (orange, brown, orange, brown)"


def test_the_fingerprint_depends_on_the_room_and_the_secret() -> None:
    link = parse_link(VECTORS["link"])
    other_room = new_link()
    assert room_fingerprint(link.secret, other_room.room_id) != FINGERPRINT
    assert room_fingerprint(other_room.secret, link.room_id) != FINGERPRINT


def test_both_clients_have_the_same_word_list_and_colours() -> None:
    assert js_strings("words.js", "WORDS") == list(WORDS)
    assert js_strings("fingerprint.js", "COLOURS") == list(COLOURS)
    assert len(WORDS) == 256
    assert len(set(WORDS)) == 256
    assert all(re.fullmatch(r"[a-z]{3,7}", word) for word in WORDS)
    assert len(set(COLOURS)) == len(COLOURS) == 8  # 256 % 8 == 0: every colour equally likely
    # app.css draws every colour the protocol names.
    css = (ROOT / "client" / "app.css").read_text(encoding="utf-8")
    for colour in COLOURS:
        assert f'.fp-block[data-colour="{colour}"]' in css


def test_the_fingerprint_command_prints_it() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "securechat", "fingerprint", VECTORS["link"]],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{FINGERPRINT}\n", "")
    damaged = subprocess.run(
        [sys.executable, "-m", "securechat", "fingerprint", VECTORS["link"][:-4]],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert damaged.returncode == 1
    assert damaged.stderr.startswith("securechat: error: ")


async def test_chat_shows_the_fingerprint_at_the_start(
    server: ServerHandle, env: dict[str, str]
) -> None:
    link = new_link(server.base)
    result = await run(env, "chat", str(link), stdin=b"/quit\n")
    assert result.returncode == 0, result
    expected = f"* room fingerprint, to compare out loud: {link_fingerprint(link)}\n"
    assert expected in result.stdout.decode()


def test_the_protocol_document_lists_the_same_words() -> None:
    section = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    table = section.split("## 6. Room fingerprint", 1)[1].split("```")[1]
    listed: list[str] = []
    for row in table.strip().splitlines():
        index, *words = row.split()
        assert int(index) == len(listed)
        listed += words
    assert listed == list(WORDS)
