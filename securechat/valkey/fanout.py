"""``Fanout``: the process's one subscriber connection, for every shared room it serves.

A room subscribes to its channel when it starts and releases it when it stops; the
subscriber hands each event to the room without waiting (``SharedRoom.published``).
Unsubscribing is left to a janitor a moment later, under the same lock as
subscribing, so a room that stops and starts again is never left unsubscribed by an
acknowledgement that arrives late, and a quick rejoin costs no round trip.

When the connection drops, coredis reconnects with backoff and subscribes again; the
second acknowledgement of a channel tells its room that events may have been missed.
"""

import logging
from typing import Final, Protocol, final

import coredis
import coredis.exceptions
import trio

from securechat.protocol import RoomId
from securechat.storage import StorageUnavailable
from securechat.valkey import keys

logger: Final = logging.getLogger("securechat.valkey.fanout")

UNSUBSCRIBE_AFTER_SECONDS: Final = 1.0  # how long a released channel stays subscribed

_UNREACHABLE: Final = (coredis.exceptions.RedisError, TimeoutError, OSError)


class Listener(Protocol):
    """A room, as the subscriber sees it."""

    def published(self, ev: int, kind: bytes, body: bytes) -> None: ...

    def resubscribed(self) -> None: ...


@final
class Fanout:
    """Resource handling: ``run`` owns the subscriber connection; rooms only borrow it."""

    def __init__(self, client: coredis.Redis[bytes]) -> None:
        self._client = client
        self._pubsub: coredis.patterns.pubsub.PubSub[bytes] | None = None
        self._listeners: dict[bytes, Listener] = {}
        self._subscribed: set[bytes] = set()  # acknowledged at least once
        self._released: set[bytes] = set()
        self._lock = trio.Lock()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with self._client.pubsub() as pubsub, trio.open_nursery() as nursery:
            self._pubsub = pubsub
            nursery.start_soon(self._janitor)
            task_status.started()
            try:
                while True:
                    message = await pubsub.get_message()
                    if message is not None:
                        self._dispatch(message["type"], message["channel"], message["data"])
            finally:
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
                listener = self._listeners.get(channel)
                if listener is not None:
                    listener.resubscribed()
            self._subscribed.add(channel)

    async def subscribe(self, room_id: RoomId, listener: Listener) -> None:
        """Deliver the room's events to ``listener`` from the acknowledgement on.

        Error handling: ``StorageUnavailable`` if Valkey does not acknowledge in time.
        """
        channel = keys.events(room_id).encode("ascii")
        async with self._lock:
            self._listeners[channel] = listener
            self._released.discard(channel)
            if channel in self._subscribed:
                return  # still subscribed since a room before this one released it
            assert self._pubsub is not None  # noqa: S101  (run() has started)
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
            if not self._released:
                continue
            async with self._lock:
                channels = [c for c in self._released if c not in self._listeners]
                self._released.clear()
                if not channels:
                    continue
                self._subscribed.difference_update(channels)
                assert self._pubsub is not None  # noqa: S101
                try:
                    await self._pubsub.unsubscribe(*channels)
                except _UNREACHABLE:
                    logger.debug("unsubscribing failed; the reconnection drops them")
