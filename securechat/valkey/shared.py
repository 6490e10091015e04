"""Rooms shared by every relay process on one Valkey: what ``serve --valkey`` runs.

``shared_rooms`` starts this process's subscriber (``Fanout``) and heartbeat, and
gives the registry a ``RoomMaker`` whose rooms are ``SharedRoom``s. On exit it
stops them and marks this process dead in Valkey, so the next heartbeat of a peer
prunes what its members left behind, without waiting for it to expire.
"""

import contextlib
import itertools
import logging
import secrets
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Final

import coredis
import trio

from securechat.budget import CreationBudget
from securechat.protocol import RoomId
from securechat.registry import RoomActor, RoomMaker
from securechat.room import Command, RoomSettings
from securechat.storage import Quota, Retention, StorageError, StorageUnavailable
from securechat.valkey.fanout import Fanout
from securechat.valkey.order import CoredisScripts, Scripts, ValkeyOrder
from securechat.valkey.presence import Heartbeat
from securechat.valkey.resp import open_pipeline
from securechat.valkey.room import Shared, SharedRoom
from securechat.valkey.storage import ValkeyStorage, open_valkey
from securechat.valkey.url import parse_valkey_url

logger: Final = logging.getLogger("securechat.valkey.shared")

FORGET_SECONDS: Final = 2.0  # time to take this process out of Valkey on the way out
PROCESS_NAME_BYTES: Final = 8  # random, new at each start: names nothing about the host


@asynccontextmanager
async def shared_rooms(
    client: coredis.Redis[bytes],
    scripts: Scripts,
    settings: RoomSettings,
    quota: Quota,
    retention: Retention,
    budget: CreationBudget,
) -> AsyncIterator[RoomMaker]:
    """Error handling: ``StorageError`` if Valkey does not take the first heartbeat."""
    process = secrets.token_hex(PROCESS_NAME_BYTES)
    order = ValkeyOrder(client, scripts, quota, retention)
    fanout = Fanout(client)
    rooms: weakref.WeakSet[SharedRoom] = weakref.WeakSet()

    def lost() -> None:
        for room in list(rooms):
            room.lost()

    heartbeat = Heartbeat(order, process, quota, budget, lost)
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
                    await order.retire(process)
                except StorageUnavailable:
                    logger.info("Valkey unreachable at exit; this relay expires there by itself")


@asynccontextmanager
async def open_shared(
    url: str, settings: RoomSettings, quota: Quota, retention: Retention, budget: CreationBudget
) -> AsyncIterator[tuple[ValkeyStorage, RoomMaker]]:
    """The Valkey storage and the shared rooms on it, for ``serve --valkey URL``.

    Error handling: ``StorageError`` if Valkey cannot be used at start.
    """
    target = parse_valkey_url(url)  # checked already by the command line
    async with contextlib.AsyncExitStack() as stack:
        storage = await stack.enter_async_context(open_valkey(target, quota, retention))
        scripts: Scripts
        if target.service is None:
            # Each post is a script: through a lean connection of its own (resp.py).
            scripts = await stack.enter_async_context(open_pipeline(target))
        else:
            scripts = CoredisScripts(storage.client)  # it follows Sentinel's failovers
        rooms = shared_rooms(storage.client, scripts, settings, quota, retention, budget)
        make_room = await stack.enter_async_context(rooms)
        yield storage, make_room
