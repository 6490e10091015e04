"""The registry: finds or starts the actor for a room, and supervises every room.

Rooms run as tasks in the registry's nursery. A room that raises is logged and
closed (its members get 1011 and reconnect to a fresh actor); it never cancels
another room or the server. The registry also tracks every open connection so
that shutdown can close each one with 1001.

Admission of a room that is not live asks storage once (``Storage.load_meta``):
a wrong token is refused before anything starts (4401); a new room needs room in
the storage quota (4507) and a live slot (4503); a room that exists and was
confirmed by a second clientId gets a slot even at ``--max-rooms``, by closing the
least valuable live room (see ``RoomRules.reclaimable``) with 4503.
"""

import hmac
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final, Protocol, final

import trio

from securechat.actor import Room
from securechat.budget import CreationBudget
from securechat.errors import CloseCode
from securechat.limits import INBOX_COMMANDS, SWEEP_INTERVAL_SECONDS
from securechat.log import room_tag
from securechat.member import Member
from securechat.protocol import RoomId
from securechat.room import Command, Join, RoomSettings, now_ms
from securechat.storage import Retention, Storage, StorageUnavailable

logger: Final = logging.getLogger("securechat.registry")


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


class RoomActor(Protocol):
    """A room's task, as the registry runs it: ``actor.Room`` or ``valkey.room.SharedRoom``."""

    @property
    def room_id(self) -> RoomId: ...

    @property
    def reclaimable(self) -> bool: ...

    async def run(self) -> None: ...

    def close_nowait(self, code: CloseCode) -> None: ...


class RoomMaker(Protocol):
    """Makes the actor of a room that starts, and the inbox it reads."""

    def __call__(
        self, room_id: RoomId, on_idle: Callable[[], None]
    ) -> tuple[trio.MemorySendChannel[Command], RoomActor]: ...


def local_rooms(storage: Storage, settings: RoomSettings) -> RoomMaker:
    """Rooms whose every member is in this process, in ``storage``."""

    def make(
        room_id: RoomId, on_idle: Callable[[], None]
    ) -> tuple[trio.MemorySendChannel[Command], RoomActor]:
        send, receive = trio.open_memory_channel[Command](INBOX_COMMANDS)
        return send, Room(room_id, receive, storage, settings, on_idle=on_idle)

    return make


@final
@dataclass(frozen=True, slots=True)
class _Live:
    """A running room: where to send its commands, and its actor."""

    inbox: trio.MemorySendChannel[Command]
    room: RoomActor


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
        make_room: RoomMaker | None = None,
    ) -> None:
        self._storage = storage
        self._make_room = make_room or local_rooms(storage, settings)
        self._budget = budget  # None: new rooms are always free (tests of other parts)
        self._settings = settings
        self._max_rooms = max_rooms
        self._nursery = nursery
        self._rooms: dict[RoomId, _Live] = {}
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
            live = self._rooms.get(room_id)
            if live is None:
                try:
                    verdict = await self._admit(room_id, verifier, source, proof_bits, priced)
                except StorageUnavailable:
                    member.evict(CloseCode.TRY_AGAIN)  # Valkey is down: try again later
                    return None
                if isinstance(verdict, ProofNeeded):
                    return verdict
                if verdict is not None:
                    member.evict(verdict)
                    return None
                priced = True  # a retry below is the same room: priced once
                # Nothing awaits from _admit's last look to here.
                live = self._rooms.get(room_id) or self._start(room_id)
            try:
                await live.inbox.send(Join(member, verifier))
            except trio.BrokenResourceError:
                continue  # the room stopped or failed in between: start it afresh
            return live.inbox
        member.evict(CloseCode.INTERNAL)
        return None

    async def _admit(
        self,
        room_id: RoomId,
        verifier: bytes,
        source: str | None,
        proof_bits: int,
        priced: bool,
    ) -> CloseCode | ProofNeeded | None:
        """Whether a room that is not live may start for this hello: None, or why not.

        On None the caller starts it (or joins it, if it started meanwhile) before
        any checkpoint, so the capacity seen here is the capacity it gets, and the
        price charged is the price seen.
        """
        meta = await self._storage.load_meta(room_id)
        if room_id in self._rooms:
            return None  # started while storage answered: the room decides
        # A wrong token is reported before capacity, as in a running room.
        if meta is not None and not hmac.compare_digest(meta.verifier, verifier):
            return CloseCode.BAD_TOKEN
        if meta is None and self._storage.quota.rooms_full():
            return CloseCode.STORAGE_FULL
        # Capacity before the price: no client is asked to work only to be refused.
        if len(self._rooms) >= self._max_rooms and not (
            meta is not None and meta.confirmed and self._reclaim_slot()
        ):
            return CloseCode.TOO_MANY_ROOMS
        if meta is None and self._budget is not None and not priced:
            now = trio.current_time()
            bits = self._budget.bits(source, now)
            if bits > proof_bits:
                return ProofNeeded(bits)
            self._budget.charge(source, now)
        return None

    def _reclaim_slot(self) -> bool:
        """Close the oldest live room whose slot is least valuable; whether there was one.

        A linear scan of the live rooms (some 10,000 attribute reads at the default
        --max-rooms), only for a confirmed room's hello at capacity.
        """
        for room_id, live in self._rooms.items():
            if live.room.reclaimable:
                del self._rooms[room_id]  # and stop iterating: the dict changed
                live.room.close_nowait(CloseCode.TOO_MANY_ROOMS)
                logger.info("room %s closed to free a slot for a confirmed room", room_tag(room_id))
                return True
        return False

    def _start(self, room_id: RoomId) -> _Live:
        def forget() -> None:
            live = self._rooms.get(room_id)
            if live is not None and live.inbox is send:
                del self._rooms[room_id]

        send, room = self._make_room(room_id, forget)
        live = self._rooms[room_id] = _Live(send, room)
        self._nursery.start_soon(self._supervise, room, forget, name=f"room {room_tag(room_id)}")
        return live

    async def _supervise(self, room: RoomActor, forget: Callable[[], None]) -> None:
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

    async def run_sweeper(self, retention: Retention) -> None:
        """Delete rooms inactive past ``retention``, hourly, forever."""
        while True:
            # Live rooms are spared: a room in use is active whether or not it writes.
            removed = await self._storage.sweep(now_ms(), retention, self._rooms.keys())
            if removed:
                logger.info("deleted the history of %d inactive rooms", removed)
            await trio.sleep(SWEEP_INTERVAL_SECONDS)

    def evict_everyone(self, code: CloseCode) -> None:
        """Close every open connection with ``code`` (they may reconnect)."""
        for member in list(self._connections):
            member.evict(code)

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
