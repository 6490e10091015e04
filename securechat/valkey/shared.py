"""Rooms shared by every relay process on one Valkey: what ``serve --valkey`` runs.

``shared_rooms`` starts this process's subscriber (``Fanout``) and heartbeat, and
gives the registry a ``RoomMaker`` whose rooms are ``SharedRoom``s. On exit it
stops them and removes this process from Valkey, so its peers need not wait for it
to expire.
"""

import itertools
import logging
import secrets
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Final

import coredis
import trio

from securechat.errors import CloseCode
from securechat.protocol import RoomId
from securechat.registry import RoomActor, RoomMaker
from securechat.room import Command, RoomSettings
from securechat.storage import Quota, Retention, StorageError, StorageUnavailable
from securechat.valkey.fanout import Fanout
from securechat.valkey.order import ValkeyOrder
from securechat.valkey.presence import Heartbeat
from securechat.valkey.room import Shared, SharedRoom

logger: Final = logging.getLogger("securechat.valkey.shared")

FORGET_SECONDS: Final = 2.0  # time to take this process out of Valkey on the way out
PROCESS_NAME_BYTES: Final = 8  # random, new at each start: names nothing about the host


@asynccontextmanager
async def shared_rooms(
    client: coredis.Redis[bytes], settings: RoomSettings, quota: Quota, retention: Retention
) -> AsyncIterator[RoomMaker]:
    """Error handling: ``StorageError`` if Valkey does not take the first heartbeat."""
    process = secrets.token_hex(PROCESS_NAME_BYTES)
    order = ValkeyOrder(client, quota, retention)
    fanout = Fanout(client)
    rooms: weakref.WeakSet[SharedRoom] = weakref.WeakSet()

    def lost() -> None:
        for room in list(rooms):
            room.evict_members(CloseCode.RESTART)

    heartbeat = Heartbeat(order, process, quota, lost)
    try:
        await heartbeat.beat()
    except StorageUnavailable as exc:
        raise StorageError(f"Valkey did not take this relay's heartbeat: {exc}") from None
    shared = Shared(order, fanout, process, itertools.count())

    def make(
        room_id: RoomId, on_idle: Callable[[], None]
    ) -> tuple[trio.MemorySendChannel[Command], RoomActor]:
        room = SharedRoom(room_id, shared, settings, on_idle)
        rooms.add(room)
        return room.inbox, room

    async with trio.open_nursery() as nursery:
        await nursery.start(fanout.run)
        nursery.start_soon(heartbeat.run)
        try:
            yield make
        finally:
            nursery.cancel_scope.cancel()
            with trio.move_on_after(FORGET_SECONDS) as scope:
                scope.shield = True
                try:
                    await order.forget(process)
                except StorageUnavailable:
                    logger.info("Valkey unreachable at exit; this relay expires there by itself")
