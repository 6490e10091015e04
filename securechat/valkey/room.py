"""``SharedRoom``: one process's part of a room that several relay processes serve.

The same shape as the one-process room (securechat/actor.py): one task alone owns
this process's members of the room, fed by its inbox. What the room decides is
decided in Valkey instead (securechat/valkey/order.py): each command is one atomic
script, and the room delivers nothing itself. Every change is published on the
room's channel as a numbered event, and every process delivers what arrives to its
own members, its own echoes included, so everyone sees one order.

Event numbers make that order checkable. The room delivers event ``n`` only after
``n - 1``; a joiner, given the history as of its join's event ``j``, gets only
events after ``j``. An event that skips a number (the subscriber reconnected, or
this room fell more than ``EVENTS_QUEUED`` behind) means this process's members may
have missed one: they are closed with 1012 and rejoin, with the history as stored.

Load shedding is this process's own: while one of its members is congested, its
members' posts are answered ``room busy`` as before; events from other processes
still arrive, and a member whose outbox fills is closed with 4008.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count
from typing import Final, final

import trio

from securechat.counters import COUNTS
from securechat.errors import CloseCode, ErrorCode
from securechat.frames import text_frame
from securechat.limits import (
    CLEAR_COOLDOWN_SECONDS,
    INBOX_COMMANDS,
    ROOM_GRACE_SECONDS,
    STALL_SECONDS,
)
from securechat.log import room_tag
from securechat.member import Answer, Member
from securechat.protocol import (
    FrameError,
    RoomId,
    SignalOut,
    System,
    encode,
    encode_error,
)
from securechat.room import (
    ROOM_BUSY,
    SLOW_DOWN,
    STORAGE_FULL,
    ClearRequest,
    Command,
    Join,
    Leave,
    Post,
    RoomSettings,
    Signal,
    now_ms,
)
from securechat.storage import StorageUnavailable
from securechat.valkey.events import RoomEvents
from securechat.valkey.fanout import Fanout
from securechat.valkey.order import Refusal, ValkeyOrder

logger: Final = logging.getLogger("securechat.valkey.room")

MAX_BATCH: Final = 128  # commands taken per turn; consecutive posts go in one script
RETRY_LEAVE_SECONDS: Final = 1.0  # how often a leave Valkey did not take is tried again

UNAVAILABLE: Final = Answer(
    encode_error(FrameError(ErrorCode.UNAVAILABLE, "storage unavailable: frame dropped"))
)
_STALL_MS: Final = int(STALL_SECONDS * 1000)
_CLEAR_COOLDOWN_MS: Final = int(CLEAR_COOLDOWN_SECONDS * 1000)


@final
class Wake:
    """Sent into a waiting room's inbox when events arrive (one at a time)."""


WAKE: Final = Wake()


@final
@dataclass(frozen=True, slots=True)
class Shared:
    """What every shared room of this process uses."""

    order: ValkeyOrder
    fanout: Fanout
    process: str  # this process's random name in Valkey
    connections: "count[int]"  # numbers this process's connections within it


@final
class SharedRoom:
    """The task that alone owns this process's members of one shared room.

    Resource handling: owns its inbox (``inbox``, made here) and its subscription:
    both end with ``run``. Error handling: a storage outage is answered frame by
    frame (``unavailable``, 1013 for a join); anything else propagates to the
    registry's supervisor, which logs it; the members are closed with 1011.
    """

    def __init__(
        self,
        room_id: RoomId,
        shared: Shared,
        settings: RoomSettings,
        on_idle: Callable[[], None],
    ) -> None:
        self.room_id = room_id
        self._shared = shared
        self._settings = settings
        self._on_idle = on_idle
        send, self._inbox = trio.open_memory_channel[Command | Wake](INBOX_COMMANDS)
        self.inbox: trio.MemorySendChannel[Command] = send
        self._wake = send
        self._members: dict[Member, str] = {}  # each with its connection's name in Valkey
        self._events = RoomEvents()
        self._woken = False
        self._owed: list[str] = []  # connections whose leave Valkey has not taken yet
        self._scope = trio.CancelScope()
        self._closing: CloseCode | None = None

    @property
    def reclaimable(self) -> bool:
        return not self._members

    # ----- the subscriber's side (securechat/valkey/fanout.py): never waits ----------

    def published(self, ev: int, kind: bytes, body: bytes) -> None:
        self._events.add(ev, kind, body)
        if not self._woken:
            try:
                self._wake.send_nowait(WAKE)
                self._woken = True
            except (trio.WouldBlock, trio.BrokenResourceError):
                pass  # a full inbox: the room is busy and reads the events after it

    def resubscribed(self) -> None:
        """The subscriber reconnected: events may have gone by unseen."""
        self._events.missed()
        self.published(0, b"", b"")  # wake the room: it closes its members here

    # ----- the task -----------------------------------------------------------------

    async def run(self) -> None:
        with self._inbox:
            try:
                with self._scope:
                    await self._serve()
            except Exception:
                self.evict_all(CloseCode.INTERNAL)
                raise
            finally:
                self._shared.fanout.release(self.room_id, self)
            if self._closing is not None:
                self.evict_all(self._closing)

    def close_nowait(self, code: CloseCode) -> None:
        self._closing = code
        self.evict_all(code)
        self._scope.cancel()

    def evict_members(self, code: CloseCode) -> None:
        """Close this process's members of the room (they rejoin); the room goes on."""
        for member in self._members:
            member.evict(code)

    def evict_all(self, code: CloseCode) -> None:
        self.evict_members(code)
        while True:
            try:
                command = self._inbox.receive_nowait()
            except (trio.WouldBlock, trio.ClosedResourceError):
                break
            if not isinstance(command, Wake):
                command.member.evict(code)

    async def _serve(self) -> None:
        try:
            await self._shared.fanout.subscribe(self.room_id, self)
        except StorageUnavailable:
            self.evict_all(CloseCode.TRY_AGAIN)
            self._on_idle()
            return
        while (batch := await self._next_batch()) is not None:
            await self._turn(batch)
            del batch

    async def _next_batch(self) -> list[Command | Wake] | None:
        if self._members:
            first = await self._inbox.receive()
        else:
            wait = RETRY_LEAVE_SECONDS if self._owed else ROOM_GRACE_SECONDS
            with trio.move_on_after(wait):
                first = await self._inbox.receive()
                return self._drain(first)
            if self._owed:
                return []
            try:
                first = self._inbox.receive_nowait()
            except trio.WouldBlock:
                self._on_idle()
                return None
        return self._drain(first)

    def _drain(self, first: Command | Wake) -> list[Command | Wake]:
        batch = [first]
        while len(batch) < MAX_BATCH:
            try:
                batch.append(self._inbox.receive_nowait())
            except trio.WouldBlock:
                break
        return batch

    async def _turn(self, batch: list[Command | Wake]) -> None:
        if self._owed:
            await self._settle_leaves()
        posts: list[Post] = []
        for command in batch:
            if isinstance(command, Post):
                posts.append(command)
                continue
            if posts:
                await self._post(posts)
                posts = []
            match command:
                case Join():
                    await self._join(command)
                case Leave(member=member):
                    await self._leave(member)
                case ClearRequest(member=member):
                    await self._clear(member)
                case Signal():
                    await self._signal(command)
                case Wake():
                    self._woken = False
            self._deliver_events()
        if posts:
            await self._post(posts)
        self._deliver_events()

    def _deliver_events(self) -> None:
        if not self._events.deliver(self._members):
            logger.info("room %s missed events; its members here rejoin", room_tag(self.room_id))
            self.evict_members(CloseCode.RESTART)

    # ----- commands -----------------------------------------------------------------

    async def _join(self, command: Join) -> None:
        member = command.member
        shared = self._shared
        conn = f"{shared.process}/{next(shared.connections)}/{member.client_id}"
        try:
            joined = await shared.order.join(
                self.room_id, shared.process, conn, member.client_id, command.verifier,
                self._settings.max_participants,
            )  # fmt: skip
        except StorageUnavailable:
            member.evict(CloseCode.TRY_AGAIN)
            return
        if joined is Refusal.BAD_TOKEN:
            member.evict(CloseCode.BAD_TOKEN)
            return
        if joined is Refusal.FULL:
            member.evict(CloseCode.ROOM_FULL)
            return
        self._members[member] = conn
        COUNTS.joins += 1
        self._events.joined(member, joined.ev)
        cap = self._settings.history_cap
        stored = joined.history[-cap:] if cap else []
        # The stored messages are the envelopes as relayed: the history is built around
        # them, as encode(History(...)) would write it, without decoding them.
        history = b'{"type":"history","cap":%d,"messages":[%b]}' % (cap, b",".join(stored))
        member.deliver_nowait(text_frame(history.decode("ascii")))
        connected = System("connected", member.client_id, joined.participants)
        member.deliver_nowait(text_frame(encode(connected)))

    async def _leave(self, member: Member) -> None:
        conn = self._members.pop(member, None)
        self._events.left(member)
        if conn is None:
            return  # refused at join, or never got in
        try:
            await self._shared.order.leave(self.room_id, conn)
        except StorageUnavailable:
            self._owed.append(conn)

    async def _settle_leaves(self) -> None:
        owed, self._owed = self._owed, []
        for index, conn in enumerate(owed):
            try:
                await self._shared.order.leave(self.room_id, conn)
            except StorageUnavailable:
                self._owed = owed[index:]
                return

    async def _post(self, posts: list[Post]) -> None:
        now = now_ms()
        congested = self._congested(now)
        taken: list[Post] = []
        for post in posts:
            if post.member not in self._members:
                continue
            if congested:
                post.member.deliver_nowait(ROOM_BUSY)
                COUNTS.errors[ErrorCode.RATE_LIMITED] += 1
            else:
                taken.append(post)
        if not taken:
            return
        messages = [(p.member.client_id, p.iv, p.ciphertext) for p in taken]
        try:
            ids = await self._shared.order.post(self.room_id, self._settings.history_cap, messages)
        except StorageUnavailable:
            for post in taken:
                post.member.deliver_nowait(UNAVAILABLE)
                COUNTS.errors[ErrorCode.UNAVAILABLE] += 1
            return
        for post, message_id in zip(taken, ids, strict=True):
            if message_id:
                COUNTS.messages += 1
            else:
                post.member.deliver_nowait(STORAGE_FULL)
                COUNTS.errors[ErrorCode.RATE_LIMITED] += 1

    def _congested(self, now: int) -> bool:
        """Whether one of this process's members is behind; one stopped reading is closed."""
        congested = False
        for member in self._members:
            since = member.congested_since(now, 0)
            if since is None:
                continue
            if now - since > _STALL_MS:
                member.evict(CloseCode.TOO_SLOW)  # its connection then leaves
            else:
                congested = True
        return congested

    async def _clear(self, member: Member) -> None:
        if member not in self._members:
            return
        try:
            cleared = await self._shared.order.clear(
                self.room_id, member.client_id, _CLEAR_COOLDOWN_MS
            )
        except StorageUnavailable:
            member.deliver_nowait(UNAVAILABLE)
            COUNTS.errors[ErrorCode.UNAVAILABLE] += 1
            return
        if not cleared:
            member.deliver_nowait(SLOW_DOWN)
            COUNTS.errors[ErrorCode.RATE_LIMITED] += 1

    async def _signal(self, command: Signal) -> None:
        conn = self._members.get(command.member)
        if conn is None or self._congested(now_ms()):
            return  # a hint the next one replaces: dropped while the room is behind
        member, iv, ciphertext = command.member, command.iv, command.ciphertext
        signal = SignalOut(sender=member.client_id, iv=iv, ciphertext=ciphertext)
        try:
            await self._shared.order.signal(self.room_id, conn, encode(signal))
        except StorageUnavailable:
            return  # a hint: dropped like any other the room cannot relay
