"""``securechat backup``: a consistent copy while two people chat, and a restore from it.

The server is the real one on 127.0.0.1 with two real WebSocket clients; the
backup is the real command in its own process, reading the same SQLite file
while the server commits beside it. The restore is what docs/deploy.md says: the
copy becomes a new data dir's ``securechat.sqlite3``, and a new server on it
serves its history to a member who has the room's token.
"""

import os
import shutil
import sqlite3
import stat
import subprocess
from pathlib import Path
from typing import Any, Final

import pytest
import trio

from securechat.sqlite import SqliteStorage
from tests.harness import (
    connect,
    joined_peer,
    make_config,
    new_room_id,
    new_token,
    start_server,
)
from tests.process import server_command
from tests.test_containers import next_message

pytestmark = pytest.mark.slow

DB_NAME: Final = "securechat.sqlite3"
FAST: Final = {"rate": 1000.0, "burst": 1000, "history": 1000}  # every message kept
CHAT_PAUSE_SECONDS: Final = 0.005  # between two pairs of messages: at most 400 a second


def backup_command(data_dir: Path, *args: str) -> list[str]:
    return server_command("backup", "--data-dir", str(data_dir), *args)


def run_backup(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        server_command("backup", *args),
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
        check=False,
    )


def stored_messages(path: Path, room: str) -> list[tuple[int, str, str]]:
    """(id, iv, ciphertext) of the room's messages in the file, which must be sound."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = db.execute(
            "SELECT id, iv, ciphertext FROM messages WHERE room_id = ? ORDER BY id", (room,)
        ).fetchall()
    finally:
        db.close()
    return [(int(i), str(iv), str(ct)) for i, iv, ct in rows]


def key(message: dict[str, Any]) -> tuple[int, str, str]:
    return (message["id"], message["iv"], message["ciphertext"])


async def test_backup_while_chatting_holds_every_acknowledged_message_and_restores(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    data, copy = tmp_path / "data", tmp_path / "backups" / "chat.sqlite3"
    copy.parent.mkdir()
    server = await start_server(nursery, make_config(data, **FAST))
    room, token = new_room_id(), new_token()
    alice = await joined_peer(nursery, server, room, token)
    bob = await joined_peer(nursery, server, room, token)
    acknowledged: list[dict[str, Any]] = []  # echoed to their sender: stored and relayed
    stop = trio.Event()

    async def chat(*, task_status: trio.TaskStatus[None]) -> None:
        pairs = ((alice, bob), (bob, alice))
        # Paced, and never more than the history keeps: on a fast machine an unpaced
        # chat outran the backup by more than --history, and its first messages went.
        while not stop.is_set() and len(acknowledged) < FAST["history"] - len(pairs):
            await trio.sleep(CHAT_PAUSE_SECONDS)
            for sender, receiver in pairs:
                sent = await sender.post()
                echo = await next_message(sender)
                assert (echo["iv"], echo["ciphertext"]) == (sent["iv"], sent["ciphertext"])
                assert key(await next_message(receiver)) == key(echo)
                acknowledged.append(echo)
            if len(acknowledged) == 20:  # two at a time: it passes 20 once, exactly
                task_status.started()

    with trio.fail_after(60):
        async with trio.open_nursery() as chatting:
            await chatting.start(chat)
            before = list(acknowledged)  # the chat goes on while the backup runs
            command = backup_command(data, str(copy))
            done = await trio.run_process(
                command, capture_stdout=True, capture_stderr=True, check=False
            )
            during = len(acknowledged) - len(before)
            stop.set()

    assert done.returncode == 0, done.stderr
    assert during > 0, "no message was relayed while the backup ran"
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert sorted(p.name for p in copy.parent.iterdir()) == ["chat.sqlite3"]  # nothing beside
    assert copy.read_bytes()[18:20] == b"\x01\x01"  # a rollback journal: one file, no -wal
    stored = stored_messages(copy, room)
    # A snapshot: the messages from the first on, with no gap, and at least all of those
    # acknowledged before the backup began.
    assert stored == [key(m) for m in acknowledged[: len(stored)]]
    assert len(stored) >= len(before)
    summary = done.stdout.decode()
    assert summary == (
        f"securechat: backed up 1 room and {len(stored)} messages "
        f"({copy.stat().st_size} bytes) to {copy}\n"
    )
    assert room not in summary
    assert token not in summary

    # Restore: the copy is the database of a new data dir, served by a new server.
    restored = tmp_path / "restored"
    restored.mkdir(mode=0o700)
    shutil.copyfile(copy, restored / DB_NAME)
    (restored / DB_NAME).chmod(0o600)
    again = await start_server(nursery, make_config(restored, **FAST))
    carol = await connect(nursery, again, room)
    history, _ = await carol.hello(token)
    assert [key(m) for m in history["messages"]] == stored
    await again.stop()
    await server.stop()


async def test_a_stopped_servers_data_dir_is_left_as_it_was(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    server = await start_server(nursery, make_config(data))
    room, token = new_room_id(), new_token()
    peer = await joined_peer(nursery, server, room, token)
    sent = await peer.post()
    await next_message(peer)
    await server.stop()
    assert sorted(p.name for p in data.iterdir()) == [DB_NAME]

    result = run_backup("--data-dir", str(data), str(tmp_path / "copy.sqlite3"))
    assert result.returncode == 0, result.stderr
    # The backup's connection was the last to close: it removed the WAL it opened.
    assert sorted(p.name for p in data.iterdir()) == [DB_NAME]
    assert [(iv, ct) for _, iv, ct in stored_messages(tmp_path / "copy.sqlite3", room)] == [
        (sent["iv"], sent["ciphertext"])
    ]


def make_database(data: Path) -> None:
    """A data dir with a database, as the server leaves it (schema and all)."""
    SqliteStorage(data).close()


def test_an_existing_file_is_kept_unless_forced(tmp_path: Path) -> None:
    data, target = tmp_path / "data", tmp_path / "copy.sqlite3"
    make_database(data)
    target.write_text("precious")
    refused = run_backup("--data-dir", str(data), str(target))
    assert refused.returncode == 1
    assert refused.stderr == f"securechat: error: {target} exists (--force replaces it)\n"
    assert target.read_text() == "precious"

    forced = run_backup("--data-dir", str(data), "--force", str(target))
    assert forced.returncode == 0, forced.stderr
    assert stored_messages(target, "any") == []
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.sqlite3", "data"]


def test_the_data_dir_comes_from_the_environment_as_for_serve(tmp_path: Path) -> None:
    data = tmp_path / "elsewhere"
    make_database(data)
    target = tmp_path / "copy.sqlite3"
    result = run_backup(str(target), env={"SECURECHAT_DATA_DIR": str(data)})
    assert result.returncode == 0, result.stderr
    assert stored_messages(target, "any") == []


def test_standard_output_gets_the_copy_and_stderr_the_summary(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_database(data)
    with open(tmp_path / "piped.sqlite3", "wb") as out:
        result = subprocess.run(
            backup_command(data, "-"), stdout=out, stderr=subprocess.PIPE, timeout=30, check=False
        )
    assert result.returncode == 0, result.stderr
    assert result.stderr.decode().startswith("securechat: backed up 0 rooms and 0 messages (")
    assert stored_messages(tmp_path / "piped.sqlite3", "any") == []
    assert sorted(p.name for p in data.iterdir()) == [DB_NAME]  # no temporary file left


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (
            "no-database",
            "securechat: error: no database at {data}/securechat.sqlite3 (is --data-dir right?)",
        ),
        ("directory", "securechat: error: {target} is a directory: name the backup file"),
        ("unwritable", "securechat: error: cannot write in {parent}: permission denied"),
    ],
)
def test_errors_are_one_line(tmp_path: Path, setup: str, expected: str) -> None:
    data, target = tmp_path / "data", tmp_path / "out" / "copy.sqlite3"
    target.parent.mkdir()
    prefix: tuple[str, ...] = ()
    if setup == "no-database":
        data.mkdir()
    else:
        make_database(data)
    if setup == "directory":
        target.mkdir()
    if setup == "unwritable":
        target.parent.chmod(0o555)
        # Root may write anywhere, except from a user namespace of its own.
        prefix = ("unshare", "--user") if os.geteuid() == 0 else ()
    result = subprocess.run(
        [*prefix, *backup_command(data, str(target))],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    line = expected.format(data=data, target=target, parent=target.parent)
    assert result.stderr == line + "\n"
    assert result.stdout == ""
