"""Hypercorn's per-connection task group, with a lighter queue of ASGI events to the app.

Part of the transport boundary (securechat/boundary.py installs it). Hypercorn
hands each event it reads (a WebSocket message, the disconnect) to the app
through a bounded Trio memory channel: every send and every receive yields to
the scheduler, and each channel costs about 1.5 KiB per connection. The queue
here keeps the bound and the backpressure (a full queue makes the reader wait,
so it stops reading the socket) but yields only to wait: a socket's reader
yields at its next read, and the app once it has taken what is queued.
"""

from collections.abc import Awaitable, Callable
from typing import final

import trio
from hypercorn.config import Config
from hypercorn.trio.task_group import TaskGroup, _handle
from hypercorn.typing import AppWrapper, ASGIReceiveEvent, ASGISendEvent, Scope


@final
class AppQueue:
    """At most ``limit`` events from the server to one app call, in order."""

    __slots__ = ("_events", "_limit", "_waiting")

    def __init__(self, limit: int) -> None:
        self._limit = max(1, limit)
        self._events: list[ASGIReceiveEvent] = []  # short: a list, not a deque's 64-slot block
        self._waiting = trio.lowlevel.ParkingLot()  # the reader (queue full) or the app (empty)

    async def put(self, event: ASGIReceiveEvent) -> None:
        while len(self._events) >= self._limit:
            await self._waiting.park()
        self._events.append(event)
        self._waiting.unpark_all()

    async def get(self) -> ASGIReceiveEvent:
        while not self._events:
            await self._waiting.park()
        event = self._events.pop(0)
        self._waiting.unpark_all()
        return event


@final
class LightTaskGroup(TaskGroup):
    """Hypercorn's TaskGroup, feeding the app through an ``AppQueue``."""

    async def spawn_app(
        self,
        app: AppWrapper,
        config: Config,
        scope: Scope,
        send: Callable[[ASGISendEvent | None], Awaitable[None]],
    ) -> Callable[[ASGIReceiveEvent], Awaitable[None]]:
        queue = AppQueue(config.max_app_queue_size)
        nursery = self._nursery
        assert nursery is not None  # noqa: S101  (Hypercorn spawns only inside the group)
        nursery.start_soon(
            _handle,
            app,
            config,
            scope,
            queue.get,
            send,
            trio.to_thread.run_sync,
            trio.from_thread.run,
        )
        return queue.put
