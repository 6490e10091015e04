"""``securechat serve --valkey`` as a process, on a real redis-server: chat, kill, restart."""

import subprocess
import sys
from pathlib import Path

import trio

from tests.harness import connect, joined_peer, new_room_id, new_token
from tests.process import start_process
from tests.valkey import Valkey


async def test_history_outlives_the_relay_in_valkey(
    nursery: trio.Nursery, tmp_path: Path, valkey: Valkey
) -> None:
    data = tmp_path / "data"
    room, token = new_room_id(), new_token()
    server = await start_process(data, 0, "--valkey", valkey.url)
    try:
        alice = await joined_peer(nursery, server, room, token)
        bob = await joined_peer(nursery, server, room, token)
        await alice.expect("system", event="joined", clientId=bob.client_id)
        sent = [await alice.post(), await bob.post()]
        # Two senders: Valkey orders their messages, and both members see that order.
        seen = [
            [(await peer.expect("message"))["ciphertext"] for _ in sent] for peer in (alice, bob)
        ]
        assert seen[0] == seen[1]
        assert sorted(seen[0]) == sorted(m["ciphertext"] for m in sent)
    finally:
        await server.close()  # kill -9: what was echoed is in Valkey already
    assert not (data / "securechat.sqlite3").exists()  # SQLite was never opened
    server = await start_process(data, 0, "--valkey", valkey.url)
    try:
        carol = await connect(nursery, server, room)
        history, _ = await carol.hello(token)
        assert [m["ciphertext"] for m in history["messages"]] == seen[0]
        assert [m["id"] for m in history["messages"]] == [1, 2]
        stranger = await connect(nursery, server, room)
        await stranger.send({"type": "hello", "auth": new_token()})
        assert await stranger.closed_with() == 4401  # the verifier came back from Valkey
    finally:
        await server.close()


def test_a_bad_valkey_url_is_one_line_without_its_password(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "securechat", "serve", "--valkey", "http://u:hunter2@h/0"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 2
    assert "must start with redis://" in done.stderr
    assert "hunter2" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_an_unreachable_valkey_stops_the_start_in_one_line(tmp_path: Path, valkey: Valkey) -> None:
    url = valkey.url
    valkey.stop()  # nothing listens there now
    done = subprocess.run(
        [sys.executable, "-m", "securechat", "serve", "--port", "0", "--valkey", url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "cannot use Valkey at redis://127.0.0.1:" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
