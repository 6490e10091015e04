"""``Heartbeat``: keeps this process alive in Valkey, and buries the ones that died.

Every ``HEARTBEAT_SECONDS`` the process moves its own expiry in the processes set
to ``PRESENCE_TTL_SECONDS`` from now. A process that stops (``kill -9``, a lost
machine) expires; the next beat of any other process removes it and prunes the
rooms it had members in, which publishes their ``left``: no ghost participant
outlives its process by more than ``PRESENCE_TTL_SECONDS`` plus one beat. A process
cut off from Valkey for longer than that finds, when it is back, that it was given
up for dead: its connections' presence is gone, so they are closed with 1012 and
rejoin. The same beat reads the stored bytes and rooms of all processes together
into this process's quota.
"""

import logging
from collections.abc import Callable
from typing import Final, final

import trio

from securechat.storage import Quota, StorageUnavailable
from securechat.valkey.order import ValkeyOrder

logger: Final = logging.getLogger("securechat.valkey.presence")

HEARTBEAT_SECONDS: Final = 2.0
PRESENCE_TTL_SECONDS: Final = 6.0  # three beats: one late beat is not a death


@final
class Heartbeat:
    def __init__(
        self, order: ValkeyOrder, process: str, quota: Quota, on_lost: Callable[[], None]
    ) -> None:
        self._order = order
        self._process = process
        self._quota = quota
        self._on_lost = on_lost
        self._beaten = False
        self._reachable = True

    async def beat(self) -> None:
        """One beat (raises ``StorageUnavailable``); ``run`` beats for ever."""
        beat = await self._order.heartbeat(
            self._process, int(PRESENCE_TTL_SECONDS * 1000), self._beaten
        )
        self._beaten = True
        self._quota.stored_bytes, self._quota.stored_rooms = beat.stored_bytes, beat.stored_rooms
        if beat.lost:
            logger.warning("this relay was cut off from Valkey too long; its connections rejoin")
            self._on_lost()
        for process in beat.dead:
            for room_id in await self._order.rooms_of(process):
                await self._order.prune(room_id)
            await self._order.forget(process)

    async def run(self) -> None:
        while True:
            try:
                await self.beat()
                if not self._reachable:
                    logger.warning("Valkey answers again")
                self._reachable = True
            except StorageUnavailable:
                if self._reachable:
                    logger.warning("Valkey cannot be reached; posts are refused until it is back")
                self._reachable = False
            await trio.sleep(HEARTBEAT_SECONDS)
