"""``Fanout``: the process's one subscriber connection, for every shared room it serves.

A room subscribes to its channel when it starts and releases it when it stops; the
subscriber hands each event to the room without waiting (``SharedRoom.published``).
Unsubscribing is left to a janitor a moment later, under the same lock as
subscribing, so a room that stops and starts again is never left unsubscribed by an
acknowledgement that arrives late, and a quick rejoin costs no round trip.

When the connection drops, coredis reconnects with backoff and subscribes again; after
the second acknowledgement of a channel the janitor reads the room's event counter
and hands it to the room, which then knows whether events went by unseen.
"""

import logging
from typing import Final, Protocol, final

import anyio
import coredis
import coredis.exceptions
import trio

from securechat.protocol import RoomId
from securechat.storage import StorageUnavailable
from securechat.valkey import keys

logger: Final = logging.getLogger("securechat.valkey.fanout")

UNSUBSCRIBE_AFTER_SECONDS: Final = 1.0  # how long a released channel stays subscribed
RESTART_SECONDS: Final = 0.5  # the first wait before a new subscriber; doubles
MAX_RESTART_SECONDS: Final = 16.0  # the longest wait, as coredis's own reconnections

# What a lost subscriber connection raises; coredis 6.9 lets AnyIO's stream errors
# through when its connection closes under it (on the way out, say).
_UNREACHABLE: Final = (
    coredis.exceptions.RedisError,
    TimeoutError,
    OSError,
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
)


class Listener(Protocol):
    """A room, as the subscriber sees it."""

    def published(self, ev: int, kind: bytes, body: bytes) -> None: ...

    def check(self, last: int) -> None:
        """After a reconnection the room's event counter was ``last``."""
        ...


@final
class Fanout:
    """Resource handling: ``run`` owns the subscriber connection; rooms only borrow it."""

    def __init__(self, client: coredis.Redis[bytes]) -> None:
        self._client = client
        self._pubsub: coredis.patterns.pubsub.PubSub[bytes] | None = None
        self._listeners: dict[bytes, Listener] = {}
        self._subscribed: set[bytes] = set()  # acknowledged at least once
        self._released: set[bytes] = set()
        self._rooms: dict[bytes, RoomId] = {}  # the room of each channel subscribed
        self._unchecked: set[bytes] = set()  # subscribed again after a reconnection
        self._lock = trio.Lock()
        self._served = False  # the current subscriber got as far as subscribing

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Subscribe for ever: coredis reconnects a lost connection itself; anything
        it gives up on (refused credentials, say) starts a new subscriber here."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._janitor)
            delay = RESTART_SECONDS
            while True:
                self._served = False
                try:
                    await self._subscriber(task_status)
                except (*_UNREACHABLE, BaseExceptionGroup) as exc:
                    # coredis's task groups wrap what they raise: Valkey's failures in a
                    # group count as one; what else is there (a cancellation on the way
                    # out, or a bug) propagates without them.
                    if isinstance(exc, BaseExceptionGroup):
                        failures, rest = exc.split(_UNREACHABLE)
                        if rest is not None:
                            if failures is None:
                                raise
                            raise rest from None
                    logger.warning("the Valkey subscriber stopped (%s); starting another", exc)
                task_status = trio.TASK_STATUS_IGNORED  # started once, by the first
                # Waits double while subscribers fail to start; one that served resets them.
                delay = RESTART_SECONDS if self._served else min(delay * 2, MAX_RESTART_SECONDS)
                await trio.sleep(delay)

    async def _subscriber(self, task_status: trio.TaskStatus[None]) -> None:
        async with self._client.pubsub() as pubsub:
            try:
                async with self._lock:
                    # A subscriber after another: every room's channel again, each to
                    # be checked for what went by meanwhile.
                    self._subscribed.clear()
                    if self._listeners:
                        await pubsub.subscribe(*self._listeners)
                        self._unchecked.update(self._listeners)
                    self._pubsub = pubsub
                self._served = True
                task_status.started()
                while True:
                    message = await pubsub.get_message()
                    if message is not None:
                        self._dispatch(message["type"], message["channel"], message["data"])
            finally:
                self._pubsub = None
                # Closing the connection ends every subscription: coredis's own way out
                # would unsubscribe first, on a connection that may be closed already.
                pubsub.channels.clear()

    def _dispatch(self, kind: str, channel: object, data: object) -> None:
        if not isinstance(channel, bytes):
            return
        if kind == "message" and isinstance(data, bytes):
            listener = self._listeners.get(channel)
            if listener is None:
                return  # released, or the last events of a room that stopped
            ev, _, rest = data.partition(b"\n")
            what, _, body = rest.partition(b"\n")
            listener.published(int(ev), what, body)
        elif kind == "subscribe":
            if channel in self._subscribed:
                self._unchecked.add(channel)  # coredis reconnected and subscribed again
            self._subscribed.add(channel)

    async def subscribe(self, room_id: RoomId, listener: Listener) -> None:
        """Deliver the room's events to ``listener`` from the acknowledgement on.

        Error handling: ``StorageUnavailable`` if Valkey does not acknowledge in time.
        """
        channel = keys.events(room_id).encode("ascii")
        async with self._lock:
            self._listeners[channel] = listener
            self._rooms[channel] = room_id
            self._released.discard(channel)
            if channel in self._subscribed:
                return  # still subscribed since a room before this one released it
            if self._pubsub is None:
                del self._listeners[channel]
                raise StorageUnavailable("no subscriber to Valkey now")
            try:
                await self._pubsub.subscribe(channel)
            except _UNREACHABLE as exc:
                del self._listeners[channel]
                raise StorageUnavailable(str(exc)) from None

    def release(self, room_id: RoomId, listener: Listener) -> None:
        channel = keys.events(room_id).encode("ascii")
        if self._listeners.get(channel) is listener:
            del self._listeners[channel]
            self._released.add(channel)

    async def _janitor(self) -> None:
        while True:
            await trio.sleep(UNSUBSCRIBE_AFTER_SECONDS)
            if self._unchecked:
                await self._check()
            if not self._released:
                continue
            async with self._lock:
                channels = [c for c in self._released if c not in self._listeners]
                self._released.clear()
                if not channels:
                    continue
                self._subscribed.difference_update(channels)
                for channel in channels:
                    del self._rooms[channel]
                if self._pubsub is None:
                    continue  # the next subscriber subscribes to the listeners' alone
                try:
                    await self._pubsub.unsubscribe(*channels)
                except _UNREACHABLE:
                    logger.debug("unsubscribing failed; the reconnection drops them")

    async def _check(self) -> None:
        """Tell each room subscribed again where its event counter is now, so it can
        tell whether events went by while the subscriber was away."""
        unchecked, self._unchecked = self._unchecked, set()
        for channel in unchecked:
            listener, room_id = self._listeners.get(channel), self._rooms.get(channel)
            if listener is None or room_id is None:
                continue
            try:
                last = await self._client.hget(keys.meta(room_id), "ev")
            except _UNREACHABLE:
                self._unchecked.add(channel)  # gone again: next time
                continue
            listener.check(int(last or 0))
