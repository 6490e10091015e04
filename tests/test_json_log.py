"""``--log-format json``: one JSON object per line, and no more in it than the text log holds."""

import json
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

import pytest
import trio
from trio_websocket import open_websocket_url

from securechat.log import JsonFormatter, room_tag
from tests.harness import Peer, new_client_id, new_room_id, new_token
from tests.process import SERVING, server_command

pytestmark = pytest.mark.slow

TIME: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
FIELDS: Final = {"time", "level", "logger", "message"}


def records(path: Path) -> list[dict[str, Any]]:
    """Every line of ``path`` as a JSON object with the log's fields, and nothing else."""
    found = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        assert isinstance(record, dict), line
        assert set(record) == FIELDS, line
        assert TIME.fullmatch(record["time"]), line
        assert record["level"] in ("debug", "info", "warning", "error"), line
        found.append(record)
    return found


async def test_every_line_is_a_json_object_and_names_no_one(tmp_path: Path) -> None:
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    command = server_command(
        "serve", "--port", "0", "--data-dir", str(tmp_path / "data"), "--ping-interval", "0",
        "--log-format", "json", "--log-level", "debug",
    )  # fmt: skip
    room, token = new_room_id(), new_token()
    alice, bob = new_client_id(), new_client_id()
    async with await trio.open_file(out, "wb") as stdout, await trio.open_file(err, "wb") as stderr:
        process = await trio.lowlevel.open_process(
            command,
            stdout=stdout.wrapped,
            stderr=stderr.wrapped,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        with trio.fail_after(15):
            while (serving := SERVING.search(out.read_text())) is None:
                assert process.returncode is None, err.read_text()
                await trio.sleep(0.05)
        ws_base = "ws" + serving.group(1).removeprefix("http")
        with trio.fail_after(15):
            async with (
                open_websocket_url(f"{ws_base}/ws/{room}?client={alice}") as alice_ws,
                open_websocket_url(f"{ws_base}/ws/{room}?client={bob}") as bob_ws,
            ):
                await Peer(alice_ws, alice).hello(token)
                await Peer(bob_ws, bob).hello(token)
                await Peer(alice_ws, alice).post()
                await Peer(bob_ws, bob).send_raw("not json")
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    printed, logged = records(out), records(err)
    assert [(r["level"], r["logger"]) for r in printed] == [("info", "securechat")] * 2
    assert printed[0]["message"].startswith("serving on http://127.0.0.1:")
    assert printed[1]["message"] == "stopped"
    loggers = {r["logger"] for r in logged}
    assert {"securechat.registry", "securechat.server", "hypercorn.error"} <= loggers
    assert any(room_tag(room) in r["message"] for r in logged)  # rooms by their tag only
    everything = out.read_text() + err.read_text()
    for secret in (room, token, alice, bob):
        assert secret not in everything


def test_an_exception_goes_into_the_object_on_the_same_line() -> None:
    try:
        raise ValueError("boom")  # noqa: TRY301 - a real traceback to format
    except ValueError:
        record = logging.LogRecord(
            "securechat.registry", logging.ERROR, __file__, 1, "room %s failed", ("ab12",),
            sys.exc_info(),
        )  # fmt: skip
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == "room ab12 failed"
    assert parsed["level"] == "error"
    assert parsed["exception"].startswith("Traceback (most recent call last):")
    assert parsed["exception"].endswith("ValueError: boom")


def test_the_variable_sets_it_too(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    done = subprocess.run(
        server_command("serve", "--port", "0", "--data-dir", str(blocker / "data")),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "SECURECHAT_LOG_FORMAT": "json"},
    )
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert json.loads(line)["message"] == f"cannot use data dir {blocker / 'data'}: not a directory"
