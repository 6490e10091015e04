"""Backup and restore with containers, as docs/deploy.md tells operators to.

The relay image (tests/conftest.py builds it once per session) runs hardened on
a volume while two clients chat; ``podman exec … securechat backup`` copies the
database out through standard output; the copy goes into a new volume with
``podman volume import`` and a new container serves its history. The image's
interpreter is Debian 12's Python 3.11.2 here, so the start-up error lines are
checked in it too. Nothing about the image is assumed beyond ``securechat`` on
its PATH and the data dir on ``/data``.
"""

import http.client
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any, Final

import pytest
import trio
from trio_websocket import open_websocket_url

from tests.containers import COMMAND_TIMEOUT, READY_TIMEOUT, Podman, free_port, run_id
from tests.harness import Peer, new_client_id, new_room_id, new_token
from tests.test_backup import stored_messages
from tests.test_containers import history_of, next_message

pytestmark = pytest.mark.slow

HARDENING: Final = ("--read-only", "--cap-drop=ALL", "--security-opt", "no-new-privileges")
APP_UID: Final = 10001  # the image's unprivileged user, who owns /data
# Explicit, whatever the image's defaults; every message kept, so the copy can be
# compared with all that was acknowledged.
SERVE: Final = (
    "serve", "--host", "0.0.0.0", "--port", "8787", "--data-dir", "/data", "--history", "100",
)  # fmt: skip


def start(podman: Podman, image: str, name: str, volume: str, port: int) -> None:
    """Run the relay hardened on ``volume``; return once ``/readyz`` says ready."""
    podman.run(
        "run", "--detach", "--name", name, *HARDENING, "--publish", f"127.0.0.1:{port}:8787",
        "--volume", f"{volume}:/data", "--entrypoint", "securechat", image, *SERVE,
    )  # fmt: skip
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass  # not listening yet
        finally:
            conn.close()
        time.sleep(0.25)
    logs = podman.run("logs", name, check=False)
    pytest.fail(f"{name} not ready in {READY_TIMEOUT} s:\n{logs.stdout}{logs.stderr}")


async def chat_through_a_backup(
    port: int, room: str, token: str, back_up: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Alice and Bob take turns; ``back_up`` runs (in a thread) after the first 10 messages.

    Returns the messages acknowledged before the backup began, and all of them.
    """
    base = f"ws://127.0.0.1:{port}/ws/{room}?client="
    alice_id, bob_id = new_client_id(), new_client_id()
    acknowledged: list[dict[str, Any]] = []
    with trio.fail_after(120):
        async with (
            open_websocket_url(base + alice_id) as alice_ws,
            open_websocket_url(base + bob_id) as bob_ws,
            trio.open_nursery() as nursery,
        ):
            alice, bob = Peer(alice_ws, alice_id), Peer(bob_ws, bob_id)
            await alice.hello(token)
            await bob.hello(token)
            done, ten = trio.Event(), trio.Event()

            async def chat() -> None:
                while not done.is_set() or len(acknowledged) < 14:
                    sender, receiver = (alice, bob) if len(acknowledged) % 2 else (bob, alice)
                    sent = await sender.post()
                    echo = await next_message(sender)
                    assert echo["ciphertext"] == sent["ciphertext"]
                    assert (await next_message(receiver))["id"] == echo["id"]
                    acknowledged.append(echo)
                    if len(acknowledged) == 10:
                        ten.set()
                    await trio.sleep(0.05)  # within the default rate limit (5 a second)

            nursery.start_soon(chat)
            await ten.wait()
            before = list(acknowledged)
            await trio.to_thread.run_sync(back_up)
            done.set()
    return before, acknowledged


def one_error_line(podman: Podman, container: str, *args: str) -> str:
    """Run ``securechat ARGS`` in the container: it must fail with one line on stderr."""
    done = podman.run("exec", container, "securechat", *args, check=False)
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_backup_in_a_running_container_restores_into_a_new_one(
    podman: Podman, relay_image: str, tmp_path: Path
) -> None:
    tag = run_id()
    volume, restored = f"sctest-backup-{tag}", f"sctest-restored-{tag}"
    first, second = f"sctest-backup-{tag}", f"sctest-restored-{tag}"
    room, token = new_room_id(), new_token()
    copy = tmp_path / "securechat-backup.sqlite3"
    try:
        podman.run("volume", "create", volume)
        port = free_port()
        start(podman, relay_image, first, volume, port)

        # The documented command: the copy comes out on standard output (no -t: bytes
        # pass unchanged), its summary on stderr.
        summary: list[str] = []

        def back_up() -> None:
            with open(copy, "wb") as out:
                done = subprocess.run(
                    ["podman", "exec", first, "securechat", "backup", "--data-dir", "/data", "-"],
                    stdout=out, stderr=subprocess.PIPE, env=dict(podman.env),
                    timeout=COMMAND_TIMEOUT, check=False,
                )  # fmt: skip
            assert done.returncode == 0, done.stderr
            summary.append(done.stderr.decode())

        before, chatted = trio.run(chat_through_a_backup, port, room, token, back_up)
        assert len(chatted) > len(before)  # the chat went on past the backup
        (line,) = summary[0].splitlines()
        assert line.startswith("securechat: backed up 1 room and ")
        in_copy = stored_messages(copy, room)
        assert len(in_copy) >= len(before)
        assert in_copy == [(m["id"], m["iv"], m["ciphertext"]) for m in chatted[: len(in_copy)]]
        assert ".securechat-backup" not in podman.output("exec", first, "ls", "-A", "/data")

        # Start-up errors are one line in the image's interpreter too (Debian's 3.11.2 here).
        python = podman.output("exec", first, "python3", "--version")
        assert (
            one_error_line(
                podman, first, "serve", "--host", "0.0.0.0", "--port", "8787", "--ephemeral"
            )
            == "securechat: error: cannot listen on 0.0.0.0:8787: address already in use"
        ), python
        assert one_error_line(podman, first, "serve", "--port", "0", "--data-dir", "/opt/x") in (
            "securechat: error: cannot use data dir /opt/x: read-only file system",
            "securechat: error: cannot use data dir /opt/x: permission denied",
        ), python

        # Restore, as docs/deploy.md: the copy as the volume's database, owned by the
        # image's user, imported into a new volume that a new container serves.
        archive = tmp_path / "restore.tar"
        staging = tmp_path / "restore"
        staging.mkdir(mode=0o700)
        (staging / "securechat.sqlite3").write_bytes(copy.read_bytes())
        (staging / "securechat.sqlite3").chmod(0o600)
        subprocess.run(
            ["tar", "--create", "--file", str(archive), "--numeric-owner",
             f"--owner={APP_UID}", f"--group={APP_UID}", "-C", str(staging), "."],
            check=True, timeout=COMMAND_TIMEOUT,
        )  # fmt: skip
        with tarfile.open(archive) as tar:
            assert sorted(tar.getnames()) == [".", "./securechat.sqlite3"]
        podman.run("volume", "create", restored)
        podman.run("volume", "import", restored, str(archive))
        port = free_port()
        start(podman, relay_image, second, restored, port)
        history = trio.run(history_of, port, room, token)
        assert [(m["id"], m["iv"], m["ciphertext"]) for m in history] == in_copy
        # The restored server writes to its volume: a new message is kept.
        relayed = trio.run(post_one, port, room, token)
        assert trio.run(history_of, port, room, token)[-1]["id"] == relayed["id"]
    finally:
        podman.run("rm", "--force", "--ignore", first, second, check=False)
        podman.run("volume", "rm", "--force", volume, restored, check=False)


async def post_one(port: int, room: str, token: str) -> dict[str, Any]:
    client_id = new_client_id()
    with trio.fail_after(30):
        async with open_websocket_url(f"ws://127.0.0.1:{port}/ws/{room}?client={client_id}") as ws:
            peer = Peer(ws, client_id)
            await peer.hello(token)
            await peer.post()
            return await next_message(peer)
