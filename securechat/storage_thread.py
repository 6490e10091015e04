"""The storage thread: one OS thread that runs calls for the event loop, in order.

What waits for the disk (loads, checkpoints) runs here, so the event loop never
does. Calls run one at a time in the order they were made; a caller that awaits
a result is woken through its Trio token.
"""

import contextlib
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar, cast, final

import outcome
import trio

T = TypeVar("T")


@final
@dataclass(slots=True)
class Call:
    """One call handed to the thread, and how to wake its caller (if one waits)."""

    run: Callable[[], object]
    token: trio.lowlevel.TrioToken | None = None
    done: trio.Event | None = None
    result: outcome.Outcome[object] | None = None


@final
class StorageThread:
    """Runs calls in order on one thread of its own.

    Resource handling: the thread starts here; ``close()`` runs the calls already
    queued, then stops it.
    """

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def put_nowait(self, run: Callable[[], object]) -> None:
        """Queue ``run`` without waiting for it (a checkpoint, say); its result is dropped."""
        self._queue.put(Call(run))

    async def call(self, run: Callable[[], T], kind: type | tuple[type, ...]) -> T:
        """Run ``run`` after every call queued before it; return its result or raise."""
        request = Call(run, trio.lowlevel.current_trio_token(), trio.Event())
        self._queue.put(request)
        assert request.done is not None  # noqa: S101  (made just above)
        with trio.CancelScope(shield=True):
            # Shielded: the call runs whether or not we wait, and is short.
            await request.done.wait()
        assert request.result is not None  # noqa: S101  (set before done)
        value = request.result.unwrap()
        assert isinstance(value, kind)  # noqa: S101  (each run returns its kind)
        return cast("T", value)

    def call_nowait(self, run: Callable[[], object]) -> Call:
        """Queue ``run`` and return at once: ``done`` is set once it has run, with its
        ``result``. For a caller that may stop waiting; the call runs all the same."""
        request = Call(run, trio.lowlevel.current_trio_token(), trio.Event())
        self._queue.put(request)
        return request

    def close(self) -> None:
        """Finish the queued calls and stop the thread (blocks until then)."""
        self._queue.put(None)
        self._thread.join()

    def _serve(self) -> None:
        while (request := self._queue.get()) is not None:
            request.result = outcome.capture(request.run)
            if request.token is not None and request.done is not None:
                with contextlib.suppress(trio.RunFinishedError):
                    request.token.run_sync_soon(request.done.set)
