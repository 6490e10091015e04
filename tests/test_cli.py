"""The command line and the process: help, one-line errors, signals, and kill -9 durability."""

import gc
import os
import subprocess
from pathlib import Path

import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from securechat.server import GC_THRESHOLDS, tune_garbage_collector
from tests.harness import fake_message, new_room_id, new_token
from tests.process import server_command, start_process, terminate

pytestmark = pytest.mark.slow


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        server_command(*args),
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_help() -> None:
    result = run("serve", "--help")
    assert result.returncode == 0
    for option in (
        "--host", "--port", "--data-dir", "--history", "--max-participants", "--max-rooms",
        "--rate", "--burst", "--hello-timeout", "--retention-days", "--allowed-origin",
    ):  # fmt: skip
        assert option in result.stdout
    assert "SECURECHAT_" in result.stdout


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["serve", "--port", "abc"], {}, "--port"),
        (["serve", "--rate", "-1"], {}, "--rate"),
        (["serve", "--frobnicate"], {}, "unrecognized arguments"),
        (["serve"], {"SECURECHAT_PORT": "99999"}, "SECURECHAT_PORT"),
        (["serve"], {"SECURECHAT_ALLOWED_ORIGIN": "not-a-url"}, "SECURECHAT_ALLOWED_ORIGIN"),
        (["serve", "--allowed-origin", "ftp:"], {}, "--allowed-origin"),
        ([], {}, "COMMAND"),
    ],
)
def test_bad_options_are_one_line_errors(
    args: list[str], env: dict[str, str], expected: str
) -> None:
    result = run(*args, env=env)
    assert result.returncode == 2
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_unusable_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run("serve", "--port", "0", "--data-dir", str(blocker / "data"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        line for line in result.stderr.strip().splitlines() if line.startswith("securechat: error:")
    ]
    assert "cannot use data dir" in result.stderr
    assert "Traceback" not in result.stderr


async def test_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    first = await start_process(tmp_path / "one")
    try:
        result = await trio.to_thread.run_sync(
            lambda: run("serve", "--port", str(first.port), "--data-dir", str(tmp_path / "two"))
        )
        assert result.returncode == 1
        assert "cannot listen on" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        await first.close()


async def test_env_settings_apply(tmp_path: Path) -> None:
    os.environ["SECURECHAT_HELLO_TIMEOUT"] = "0.2"
    try:
        server = await start_process(tmp_path / "data")
    finally:
        del os.environ["SECURECHAT_HELLO_TIMEOUT"]
    try:
        with trio.fail_after(10):
            async with open_websocket_url(server.ws_url(new_room_id(), "abcd")) as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.get_message()
        assert closed.value.reason is not None
        assert closed.value.reason.code == 4408
    finally:
        await server.close()


async def test_sigterm_closes_every_socket_with_1001_and_exits_0(tmp_path: Path) -> None:
    server = await start_process(tmp_path / "data")
    try:
        room, token = new_room_id(), new_token()
        with trio.fail_after(10):
            async with open_websocket_url(server.ws_url(room, "abcd")) as ws:
                await ws.send_message(f'{{"type":"hello","auth":"{token}"}}')
                await ws.get_message()
                await ws.get_message()
                code = await terminate(server)
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.get_message()
        assert closed.value.reason is not None
        assert closed.value.reason.code == 1001
        assert code == 0
        output = await server.rest_of_output()
        assert "stopped" in output
        assert "Traceback" not in output
        assert token not in output
        assert room not in output
    finally:
        await server.close()


async def test_a_relayed_message_survives_kill_9(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = await start_process(data)
    room, token = new_room_id(), new_token()
    message = fake_message()
    try:
        with trio.fail_after(10):
            async with open_websocket_url(server.ws_url(room, "abcd")) as ws:
                await ws.send_message(f'{{"type":"hello","auth":"{token}"}}')
                await ws.get_message()
                await ws.get_message()
                await ws.send_message(
                    f'{{"type":"message","iv":"{message["iv"]}","ciphertext":"{message["ciphertext"]}"}}'
                )
                echo = await ws.get_message()  # relayed, so it must be durable now
            assert message["ciphertext"] in echo
            server.kill()  # SIGKILL: no shutdown code runs, nothing is flushed
            await server.process.wait()
    finally:
        await server.close()
    again = await start_process(data)
    try:
        with trio.fail_after(10):
            async with open_websocket_url(again.ws_url(room, "efgh")) as ws:
                await ws.send_message(f'{{"type":"hello","auth":"{token}"}}')
                history = await ws.get_message()
        assert message["ciphertext"] in history
    finally:
        await again.close()


def test_the_server_process_tunes_the_garbage_collector() -> None:
    before = gc.get_threshold()
    try:
        tune_garbage_collector()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 10_000  # what the imports made is left alone
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
