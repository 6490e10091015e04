"""The room actor: the one task that owns a room's ``RoomRules``.

It reads commands from its inbox in batches, applies them to the rules, commits
the batch's writes in one transaction, and only then delivers what the rules
decided. A live room keeps no messages in memory, only their sizes: a joiner's
history is read from storage once the batch that admitted it has committed.
"""

from collections.abc import Callable
from typing import Final, final

import trio

from securechat.errors import CloseCode
from securechat.limits import ROOM_GRACE_SECONDS
from securechat.protocol import History, RoomId, encode
from securechat.room import Command, Join, Outcome, RoomRules, RoomSettings, now_ms
from securechat.storage import Storage

MAX_BATCH: Final = 128  # commands handled per transaction; bounds one turn's latency


@final
class Room:
    """The task that alone owns one room's state.

    Resource handling: owns the receive side of its inbox and closes it on exit,
    which makes every later send to the room fail with ``BrokenResourceError``.
    It stops by itself once it has had no members and no commands for
    ``ROOM_GRACE_SECONDS``, calling ``on_idle`` first with no checkpoint between
    finding the inbox empty and closing it, so no command is ever lost; or when
    ``close_nowait`` is called, closing every member and queued connection first.

    Error handling: an exception (a storage failure, a bug) propagates to the
    supervisor in the registry, which evicts the members with 1011.
    """

    def __init__(
        self,
        room_id: RoomId,
        inbox: trio.MemoryReceiveChannel[Command],
        storage: Storage,
        settings: RoomSettings,
        on_idle: Callable[[], None],
    ) -> None:
        self.room_id = room_id
        self._inbox = inbox
        self._storage = storage
        self._settings = settings
        self._on_idle = on_idle
        self._rules: RoomRules | None = None
        self._held: Command | None = None  # taken from the inbox for the next batch
        self._scope = trio.CancelScope()
        self._closing: CloseCode | None = None

    @property
    def reclaimable(self) -> bool:
        """Whether closing this room frees the least valuable slot (see ``RoomRules``)."""
        return self._rules is not None and self._rules.reclaimable

    async def run(self) -> None:
        with self._inbox:
            try:
                with self._scope:
                    await self._serve()
            except Exception:
                self.evict_all(CloseCode.INTERNAL)
                raise
            if self._closing is not None:
                self.evict_all(self._closing)

    def close_nowait(self, code: CloseCode) -> None:
        """Close every member with ``code`` and stop the room (its state stays stored)."""
        self._closing = code
        self.evict_all(code)
        self._scope.cancel()

    def evict_all(self, code: CloseCode) -> None:
        """Close every member, and every connection whose command is still queued."""
        if self._rules is not None:
            for member in self._rules.members:
                member.evict(code)
        if self._held is not None:
            self._held.member.evict(code)
        while True:
            try:
                self._inbox.receive_nowait().member.evict(code)
            except (trio.WouldBlock, trio.ClosedResourceError):
                break

    async def _serve(self) -> None:
        record = await self._storage.load(self.room_id)
        rules = self._rules = RoomRules(record, self._settings, self._storage.quota)
        while (batch := await self._next_batch(rules)) is not None:
            await self._turn(rules, batch)  # its locals go with it: an idle room holds no
            del batch  # ciphertext of its last turn

    async def _turn(self, rules: RoomRules, batch: list[Command]) -> None:
        now = now_ms()
        out = Outcome()
        for command in batch:
            rules.apply(command, now, out)
        if out.writes:
            await self._storage.write(self.room_id, out.writes, now)
        history = ""
        if out.wants_history:
            # Read between two commits, after the batch's last post or clear (see
            # _drain): joiners get exactly what is stored, then every later message.
            messages = await self._storage.load_history(self.room_id)
            cap = self._settings.history_cap
            history = encode(History(cap=cap, messages=messages[-cap:] if cap else []))
        out.carry_out(history)

    async def _next_batch(self, rules: RoomRules) -> list[Command] | None:
        if self._held is not None:
            first, self._held = self._held, None
        elif rules.members:
            first = await self._inbox.receive()
        else:
            with trio.move_on_after(ROOM_GRACE_SECONDS):
                return self._drain(await self._inbox.receive())
            try:
                first = self._inbox.receive_nowait()
            except trio.WouldBlock:
                self._on_idle()
                return None
        return self._drain(first)

    def _drain(self, first: Command) -> list[Command]:
        """The commands waiting, up to ``MAX_BATCH``; after a join, joins only (the
        joiners' history is read after the commit: the next other command waits)."""
        batch = [first]
        joining = isinstance(first, Join)
        while len(batch) < MAX_BATCH:
            try:
                command = self._inbox.receive_nowait()
            except trio.WouldBlock:
                break
            if joining and not isinstance(command, Join):
                self._held = command
                break
            joining |= isinstance(command, Join)
            batch.append(command)
        return batch
