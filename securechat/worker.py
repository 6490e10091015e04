"""One worker process of ``securechat serve --workers N``: a whole relay on a shared socket.

Started by the supervisor (securechat/workers.py) as ``python -m securechat.worker
FD INDEX``, with the listening socket inherited as descriptor FD. What it is told,
and tells, goes through its standard streams, never its command line or
environment (where the Valkey URL's password would be readable by other users):

- stdin: the server's ``Config`` as one JSON line, then nothing. The pipe stays
  open for as long as the supervisor lives: its end (EOF) means the supervisor
  is gone, even by ``kill -9``, and the worker drains as on SIGTERM.
- stdout: ``READY`` once serving; then the worker points its stdout at stderr,
  so nothing else can land in the pipe.
- stderr: the log, in the supervisor's level and format (they are in the config).

SIGTERM or SIGINT (or stdin's end) drains it as it does ``serve``: every
WebSocket gets 1001, then the process exits 0. A start-up failure is one line on
stderr and exit 1, as for ``serve``.
"""

import functools
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Final

import msgspec
import trio

from securechat import log as sclog
from securechat.config import Config
from securechat.metrics import parse_address
from securechat.server import serve, tune_garbage_collector
from securechat.startup import run_to_exit

logger: Final = logging.getLogger("securechat.worker")

READY: Final = b"ready\n"  # on stdout, once the worker serves
# The config line on stdin: some 1 KiB, more with many origins and proxies listed.
MAX_CONFIG_BYTES: Final = 1024 * 1024


def _encode_path(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    raise NotImplementedError(type(value))


def _decode_path(kind: type, value: object) -> object:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError(kind)


def encode_config(config: Config) -> bytes:
    """``config`` as the one JSON line a worker reads on stdin."""
    return msgspec.json.encode(config, enc_hook=_encode_path) + b"\n"


def decode_config(line: bytes) -> Config:
    """The config a supervisor sent; raises ``msgspec.ValidationError`` if it is not one."""
    return msgspec.json.decode(line, type=Config, dec_hook=_decode_path)


def metrics_address_of(address: str, index: int) -> str:
    """Worker ``index``'s metrics address: the configured port plus ``index`` (0 stays 0)."""
    if not address:
        return address
    host, port = parse_address(address)
    shifted = port + index if port else 0
    return f"[{host}]:{shifted}" if ":" in host else f"{host}:{shifted}"


async def set_at_signal(signals: AsyncIterator[int], event: trio.Event) -> None:
    """Set ``event`` at the first of ``signals`` (whose receiver then keeps the rest)."""
    async for _ in signals:
        event.set()
        return


async def _wait_supervisor_gone(shutdown: trio.Event) -> None:
    """Set ``shutdown`` when stdin ends: the supervisor closed it, or died."""
    async with trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())) as stdin:
        while await stdin.receive_some():
            pass  # the supervisor sends nothing after the config; ignore it if it does
    if not shutdown.is_set():
        logger.warning("the supervisor is gone: stopping")
        shutdown.set()


def _report_ready() -> None:
    os.write(sys.stdout.fileno(), READY)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # nothing more goes into the pipe


async def run_worker(config: Config, listen_fd: int) -> None:
    """Serve the shared socket until a signal or the supervisor's end; then drain."""
    shutdown = trio.Event()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(set_at_signal, signals, shutdown)
            nursery.start_soon(_wait_supervisor_gone, shutdown)

            async def run(*, task_status: trio.TaskStatus[str]) -> None:
                await serve(config, shutdown, listen_fd=listen_fd, task_status=task_status)
                nursery.cancel_scope.cancel()  # served and drained: the watchers go too

            await nursery.start(run)
            _report_ready()


def main(argv: list[str]) -> None:
    """``python -m securechat.worker FD INDEX``, the config on stdin (see the module doc)."""
    listen_fd, index = int(argv[0]), int(argv[1])
    line = sys.stdin.buffer.readline(MAX_CONFIG_BYTES)
    if not line.endswith(b"\n"):  # the supervisor died first, or this was run by hand
        sys.exit("securechat: error: a worker is started by securechat serve --workers N")
    config = decode_config(line)
    config = replace(config, metrics_address=metrics_address_of(config.metrics_address, index))
    sclog.configure(config.log_level, config.log_format)
    tune_garbage_collector()
    run_to_exit(functools.partial(run_worker, config, listen_fd))


if __name__ == "__main__":
    main(sys.argv[1:])
