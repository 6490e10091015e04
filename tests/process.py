"""A server in a child process, for what only a process can show: signals, kill -9, exit codes."""

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import trio

from tests.harness import Urls

SERVING = re.compile(r"serving on (http://[0-9.:]+)")


@dataclass
class ServerProcess(Urls):
    process: trio.Process
    base: str
    output: trio.abc.ReceiveStream

    async def rest_of_output(self) -> str:
        chunks = []
        with trio.fail_after(10):
            while chunk := await self.output.receive_some():
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()

    async def close(self) -> None:
        """Kill if still running, then reap it and close its pipe."""
        self.kill()
        with trio.CancelScope(shield=True), trio.fail_after(10):
            await self.process.wait()
            await self.output.aclose()


def server_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "securechat", *args]


async def start_process(
    data_dir: Path, port: int = 0, *extra: str, descriptors: int | None = None
) -> ServerProcess:
    """Start ``securechat serve`` and wait until it says where it listens.

    ``descriptors`` sets its RLIMIT_NOFILE, soft and hard. The caller must
    ``kill()`` it in a ``finally``.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if descriptors is not None:
        # prlimit, not preexec_fn: the test process runs threads, and preexec_fn is unsafe then.
        extra_prefix = ["prlimit", f"--nofile={descriptors}:{descriptors}", "--"]
    else:
        extra_prefix = []
    command = extra_prefix + server_command(
        "serve", "--port", str(port), "--data-dir", str(data_dir), "--ping-interval", "0", *extra
    )
    process = await trio.lowlevel.open_process(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
    )
    assert process.stdout is not None
    seen = b""
    try:
        with trio.fail_after(15):
            while (match := SERVING.search(seen.decode(errors="replace"))) is None:
                chunk = await process.stdout.receive_some()
                assert chunk, f"server exited early: {seen.decode(errors='replace')}"
                seen += chunk
    except BaseException:
        process.kill()
        raise
    return ServerProcess(process, match.group(1), process.stdout)


async def terminate(server: ServerProcess) -> int:
    server.process.send_signal(signal.SIGTERM)
    with trio.fail_after(10):
        return await server.process.wait()
