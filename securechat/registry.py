"""The registry: finds or starts the actor for a room, and supervises every room.

Rooms run as tasks in the registry's nursery. A room that raises is logged and
closed (its members get 1011 and reconnect to a fresh actor); it never cancels
another room or the server. The registry also tracks every open connection so
that shutdown can close each one with 1001.
"""

import hmac
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final, final

import trio

from securechat.budget import CreationBudget
from securechat.errors import CloseCode
from securechat.limits import INBOX_COMMANDS, SWEEP_INTERVAL_SECONDS
from securechat.log import room_tag
from securechat.member import Member
from securechat.protocol import RoomId
from securechat.room import Command, Join, Room, RoomSettings, now_ms
from securechat.storage import Storage

logger: Final = logging.getLogger("securechat.registry")

DAY_MS: Final = 86_400_000


@final
@dataclass(frozen=True, slots=True)
class RegistryStatistics:
    rooms: int
    connections: int


@final
@dataclass(frozen=True, slots=True)
class ProofNeeded:
    """A new room's hello was not admitted: it needs a proof of this many bits."""

    bits: int


@final
class Registry:
    """Owns the set of live rooms and the set of open connections.

    Resource handling: room tasks run in ``nursery``, which the caller owns; the
    caller cancels it after ``shutdown()``.
    """

    def __init__(
        self,
        storage: Storage,
        settings: RoomSettings,
        max_rooms: int,
        nursery: trio.Nursery,
        budget: CreationBudget | None = None,
    ) -> None:
        self._storage = storage
        self._budget = budget  # None: new rooms are always free (tests of other parts)
        self._settings = settings
        self._max_rooms = max_rooms
        self._nursery = nursery
        self._rooms: dict[RoomId, trio.MemorySendChannel[Command]] = {}
        self._connections: set[Member] = set()
        self._all_closed = trio.Event()
        self._closing = False

    def statistics(self) -> RegistryStatistics:
        return RegistryStatistics(rooms=len(self._rooms), connections=len(self._connections))

    @contextmanager
    def track(self, member: Member) -> Iterator[None]:
        """Count a connection as open for its lifetime, so shutdown can close it."""
        if self._closing:
            member.evict(CloseCode.GOING_AWAY)
        self._connections.add(member)
        try:
            yield
        finally:
            self._connections.discard(member)
            if self._closing and not self._connections:
                self._all_closed.set()

    async def join(
        self,
        room_id: RoomId,
        member: Member,
        verifier: bytes,
        *,
        source: str | None = None,
        proof_bits: int = 0,
    ) -> trio.MemorySendChannel[Command] | ProofNeeded | None:
        """Ask the room to admit ``member``; return its inbox, or None if refused here.

        A room that does not exist yet is new: it is charged to the creation
        budget, and when the budget asks for more than ``proof_bits`` (the proof
        the hello carried), nothing is started and ``ProofNeeded`` says the price.
        A room that exists, live or stored, is never priced. ``source`` is the
        connection's address, or None; it is used here and never kept elsewhere.

        The room answers by delivering history to the member or by evicting it.
        """
        priced = False
        for _ in range(2):
            inbox = self._rooms.get(room_id)
            if inbox is None:
                # Capacity first: no client is asked to work only to be refused.
                if len(self._rooms) >= self._max_rooms:
                    await self._refuse_over_capacity(room_id, member, verifier)
                    return None
                if self._budget is not None and not priced and await self._is_new(room_id):
                    now = trio.current_time()
                    bits = self._budget.bits(source, now)
                    if bits > proof_bits:
                        return ProofNeeded(bits)
                    # No checkpoint since the price: it is the price that is charged.
                    self._budget.charge(source, now)
                priced = True  # a retry below is the same room: priced once
                # The storage call checkpoints: look again.
                inbox = self._rooms.get(room_id)
                if inbox is None:
                    if len(self._rooms) >= self._max_rooms:
                        await self._refuse_over_capacity(room_id, member, verifier)
                        return None
                    inbox = self._start(room_id)
            try:
                await inbox.send(Join(member, verifier))
            except trio.BrokenResourceError:
                continue  # the room stopped or failed in between: start it afresh
            return inbox
        member.evict(CloseCode.INTERNAL)
        return None

    async def _is_new(self, room_id: RoomId) -> bool:
        # A room exists once its first hello registered a verifier.
        return await self._storage.load_verifier(room_id) is None

    async def _refuse_over_capacity(self, room_id: RoomId, member: Member, verifier: bytes) -> None:
        # A wrong token is reported before capacity, as in a running room.
        stored = await self._storage.load_verifier(room_id)
        if stored is not None and not hmac.compare_digest(stored, verifier):
            member.evict(CloseCode.BAD_TOKEN)
        else:
            member.evict(CloseCode.TOO_MANY_ROOMS)

    def _start(self, room_id: RoomId) -> trio.MemorySendChannel[Command]:
        send, receive = trio.open_memory_channel[Command](INBOX_COMMANDS)

        def forget() -> None:
            if self._rooms.get(room_id) is send:
                del self._rooms[room_id]

        room = Room(room_id, receive, self._storage, self._settings, on_idle=forget)
        self._rooms[room_id] = send
        self._nursery.start_soon(self._supervise, room, forget, name=f"room {room_tag(room_id)}")
        return send

    async def _supervise(self, room: Room, forget: Callable[[], None]) -> None:
        tag = room_tag(room.room_id)
        logger.debug("room %s started", tag)
        try:
            await room.run()
            logger.debug("room %s stopped: idle", tag)
        except Exception:
            # The one deliberate broad catch: one room's failure must not end the others.
            logger.exception("room %s failed; members disconnected", tag)
        finally:
            forget()

    async def run_sweeper(self, retention_days: int) -> None:
        """Delete rooms inactive for longer than ``retention_days``, hourly, forever."""
        if retention_days <= 0:
            return
        while True:
            cutoff = now_ms() - retention_days * DAY_MS
            removed = await self._storage.sweep(cutoff, self._rooms.keys())  # live: see sweep
            if removed:
                logger.info("deleted %d inactive rooms", removed)
            await trio.sleep(SWEEP_INTERVAL_SECONDS)

    async def shutdown(self) -> None:
        """Close every connection with 1001 and wait until all are gone.

        New connections are refused with 1001 from here on. The caller bounds the wait.
        """
        self._closing = True
        if not self._connections:
            return
        for member in list(self._connections):
            member.evict(CloseCode.GOING_AWAY)
        await self._all_closed.wait()
