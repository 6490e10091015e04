"""``securechat serve --workers N``: N relay processes sharing one listening socket.

The supervisor (this process) binds the socket once (``server.listen``), so a bad
address is the usual one-line start-up error and port 0 picks one port for all;
then it starts N worker processes (securechat/worker.py), each a whole relay on
the Trio event loop of its own core, and passes the socket to each as an
inherited descriptor.

Why one inherited socket rather than N sockets bound with ``SO_REUSEPORT``: one
socket has one accept queue, which no worker owns. A worker that dies loses no
connection still waiting in the queue (with ``SO_REUSEPORT`` the kernel resets
the connections queued on a dead worker's socket), its replacement needs no new
bind (nothing can take the port meanwhile), and no other process, even of the
same user, can join the group and take a share of the connections. Every idle
worker waits on the socket and the first to wake accepts, so a busy worker
takes fewer; rooms are shared through Valkey, which is why ``--workers`` needs
``--valkey``.

Supervision: a worker that ends while the supervisor is not stopping is logged
(one line: which worker, its PID, how it ended) and started again after a delay
that doubles from ``RESTART_FIRST_DELAY_SECONDS`` to ``RESTART_MAX_DELAY_SECONDS``,
and starts over once a worker has served ``RESTART_STABLE_SECONDS``. At start,
every worker must come up, or the server stops: a worker's start-up failure is
its one line on stderr and the supervisor's exit status. SIGTERM or SIGINT to
the supervisor drains every worker (1001 to each WebSocket, exit 0) and kills
any that outlives ``WORKER_STOP_SECONDS``.
"""

import logging
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Final, final

import trio

from securechat import log as sclog
from securechat.config import Config
from securechat.limits import SHUTDOWN_CLOSE_SECONDS
from securechat.metrics import parse_address
from securechat.server import listen
from securechat.worker import READY, encode_config, set_at_signal

logger: Final = logging.getLogger("securechat.workers")

MAX_WORKERS: Final = 256  # processes on one machine: more than its cores is only overhead
# Until a new worker serves: Python's start, then storage (a Valkey that is slow to answer).
WORKER_START_SECONDS: Final = 30.0
# A worker's drain takes up to twice SHUTDOWN_CLOSE_SECONDS (its rooms' 1001, then
# Hypercorn's graceful close), then closing its Valkey client: under the 10 s that
# podman and systemd give the whole service before their own SIGKILL.
WORKER_STOP_SECONDS: Final = 2 * SHUTDOWN_CLOSE_SECONDS + 4.0
RESTART_FIRST_DELAY_SECONDS: Final = 0.25  # before the first restart of a worker that died
RESTART_MAX_DELAY_SECONDS: Final = 30.0  # the cap of the doubling: a worker that keeps dying
RESTART_STABLE_SECONDS: Final = 60.0  # served this long, a worker's next restart is prompt


def settings_problem(workers: int, valkey: str, metrics_address: str) -> str | None:
    """Why these settings cannot run ``workers`` processes, or None if they can."""
    if workers == 1:
        return None
    if not valkey:
        return (
            f"--workers {workers} needs --valkey: the worker processes share their rooms "
            "through Valkey (SQLite is for one process)"
        )
    port = parse_address(metrics_address)[1] if metrics_address else 0
    if port and port + workers - 1 > 65535:
        return (
            f"--metrics-address: worker i listens on port {port} + i, and "
            f"{port + workers - 1} is past 65535"
        )
    return None


def worker_command(listen_fd: int, index: int) -> list[str]:
    return [sys.executable, "-m", "securechat.worker", str(listen_fd), str(index)]


def how_it_ended(returncode: int) -> str:
    """``exited with code 1`` or ``was killed by SIGKILL``."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


@final
class _Worker:
    """One worker slot: the process serving it now, started again when it dies."""

    def __init__(self, supervisor: "Supervisor", index: int) -> None:
        self._supervisor = supervisor
        self.index = index
        self.process: trio.Process | None = None

    async def start(self, again: bool = False) -> int | None:
        """Start a worker process and wait until it serves: None, or its exit status.

        Resource handling: the process's stdin stays open while it lives (its
        lifeline); a worker that does not report within ``WORKER_START_SECONDS``
        is killed (status 1).
        """
        config = self._supervisor.config
        process = await trio.lowlevel.open_process(
            worker_command(self._supervisor.listen_fd, self.index),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=(self._supervisor.listen_fd,),
        )
        self.process = process
        assert process.stdin is not None  # noqa: S101  (asked for above)
        assert process.stdout is not None  # noqa: S101
        answer = b""
        async with process.stdout:
            with trio.move_on_after(WORKER_START_SECONDS) as waiting:
                try:
                    await process.stdin.send_all(encode_config(config))
                    while len(answer) < len(READY) and (
                        chunk := await process.stdout.receive_some()
                    ):
                        answer += chunk
                except trio.BrokenResourceError:
                    pass  # it died at once: its status says how
        if answer == READY:
            log = logger.info if again else logger.debug
            log("worker %d serving%s (pid %d)", self.index, " again" if again else "", process.pid)
            return None
        if waiting.cancelled_caught:
            logger.error("worker %d did not start within %.0f s", self.index, WORKER_START_SECONDS)
            process.kill()
        return await self.wait() or 1

    async def wait(self) -> int:
        """Wait for the process to end, close its stdin and forget it; its exit status."""
        process = self.process
        assert process is not None  # noqa: S101  (only called once started)
        code = await process.wait()
        if process.stdin is not None:
            await process.stdin.aclose()
        self.process = None
        return code

    async def keep_running(self) -> None:
        """Wait for the serving process to end, then start another (until cancelled)."""
        delay = RESTART_FIRST_DELAY_SECONDS
        while True:
            served_from = trio.current_time()
            assert self.process is not None  # noqa: S101  (started before this runs)
            pid = self.process.pid
            code = await self.wait()
            if trio.current_time() - served_from >= RESTART_STABLE_SECONDS:
                delay = RESTART_FIRST_DELAY_SECONDS
            logger.warning(
                "worker %d (pid %d) %s; starting another in %.2g s",
                self.index,
                pid,
                how_it_ended(code),
                delay,
            )
            await trio.sleep(delay)
            delay = min(2 * delay, RESTART_MAX_DELAY_SECONDS)
            while (failed := await self.start(again=True)) is not None:  # it said why itself
                logger.warning(
                    "worker %d could not start (it %s); trying again in %.2g s",
                    self.index,
                    how_it_ended(failed),
                    delay,
                )
                await trio.sleep(delay)
                delay = min(2 * delay, RESTART_MAX_DELAY_SECONDS)

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signum)


@final
class Supervisor:
    """Runs ``config.workers`` worker processes on ``listen_fd`` until told to stop."""

    def __init__(self, config: Config, listen_fd: int) -> None:
        self.config = config
        self.listen_fd = listen_fd
        self.workers = [_Worker(self, index) for index in range(config.workers)]

    async def start(self) -> int | None:
        """Start every worker: None once all serve, else the exit status to stop with.

        Worker 0 starts alone, so that what stops every worker (Valkey out of
        reach, say) is reported once; then the others together. If one fails,
        the others are stopped.
        """
        failed = await self.workers[0].start()
        if failed is None:
            results: list[int | None] = []

            async def start(worker: _Worker) -> None:
                results.append(await worker.start())

            async with trio.open_nursery() as nursery:
                for worker in self.workers[1:]:
                    nursery.start_soon(start, worker)
            failed = next((code for code in results if code is not None), None)
        if failed is not None:
            await self.stop()
        return failed

    async def supervise(self) -> None:
        """Start again every worker that ends, until cancelled (``start`` first)."""
        async with trio.open_nursery() as nursery:
            for worker in self.workers:
                nursery.start_soon(worker.keep_running)

    async def stop(self) -> None:
        """SIGTERM every worker, SIGKILL those alive after ``WORKER_STOP_SECONDS``; reap all.

        Resource handling: on return no worker process is left; stdin pipes are closed.
        """
        for worker in self.workers:
            worker.signal(signal.SIGTERM)
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                for worker in self.workers:
                    if worker.process is not None:
                        nursery.start_soon(self._reap, worker)

    async def _reap(self, worker: _Worker) -> None:
        with trio.move_on_after(WORKER_STOP_SECONDS):
            await worker.wait()
            return
        logger.warning(
            "worker %d did not stop within %.0f s: killing it", worker.index, WORKER_STOP_SECONDS
        )
        worker.signal(signal.SIGKILL)
        await worker.wait()


async def run_workers(config: Config, serving: Callable[[str, int], None]) -> int:
    """Bind once, then serve with ``config.workers`` processes; the exit status.

    Calls ``serving`` with the base URL and the count once every worker serves.

    Error handling: an address that cannot be bound raises ``ListenError``
    before any worker starts.
    """
    with listen(config) as listener:
        host, port = listener.getsockname()[:2]
        base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        status = await run_supervisor(
            config, listener.fileno(), lambda: serving(base, config.workers)
        )
    if status == 0:
        sclog.announce("stopped")
    return status


async def run_supervisor(config: Config, listen_fd: int, serving: Callable[[], None]) -> int:
    """Serve with ``config.workers`` processes until SIGTERM or SIGINT; the exit status.

    Calls ``serving`` once every worker serves. Returns 0 after a signal's
    drain, or a worker's start-up status (``serving`` not called then).
    """
    supervisor = Supervisor(config, listen_fd)
    stopping = trio.Event()
    status = 0
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(set_at_signal, signals, stopping)
            with trio.CancelScope() as starting:
                nursery.start_soon(_cancel_when, stopping, starting)
                failed = await supervisor.start()
                if failed is None:
                    nursery.start_soon(supervisor.supervise)
                    serving()
                    await stopping.wait()
                else:
                    status = failed if failed > 0 else 1  # killed by a signal: 1 all the same
            nursery.cancel_scope.cancel()  # no more restarts; then the drain
        if status == 0:
            logger.info("stopping %d workers", config.workers)
        await supervisor.stop()
    return status


async def _cancel_when(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
