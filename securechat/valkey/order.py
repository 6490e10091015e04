"""``ValkeyOrder``: a shared room's state changes, each one atomic script in Valkey.

The room actor of each process (securechat/valkey/room.py) calls these; they never
decide anything a script can decide, so whichever process a member reaches, the
room's order, its verifier, its presence and its clear cooldown are Valkey's.

Error handling: every call raises ``StorageUnavailable`` when Valkey cannot be
reached or does not answer within coredis's timeouts (securechat/valkey/url.py), so
that callers handle one exception whatever the client library raised.
"""

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol, cast, final

import coredis
import coredis.exceptions

from securechat.budget import MAX_EXCESS, BudgetSettings
from securechat.protocol import ClientId, RoomId, parse_client_id
from securechat.storage import (
    MESSAGE_OVERHEAD_BYTES,
    Quota,
    Retention,
    StorageUnavailable,
    room_bytes,
    stored_bytes,
)
from securechat.valkey import keys, room_scripts
from securechat.valkey.resp import Script, Unreachable

FOREVER: Final = -1  # a retention of None: the keys never expire

_UNREACHABLE: Final = (coredis.exceptions.ConnectionError, TimeoutError, OSError)


@final
class Refusal(enum.Enum):
    BAD_TOKEN = "bad_token"  # noqa: S105  (a refusal's name, not a password)
    FULL = "full"


@final
@dataclass(frozen=True, slots=True)
class Joined:
    ev: int  # the join's own event: the joiner gets only later ones
    participants: list[ClientId]
    history: list[bytes]  # the stored messages, oldest first, each as relayed


@final
@dataclass(frozen=True, slots=True)
class Beat:
    lost: bool  # this process had been given up for dead: its presence is gone
    dead: list[str]  # processes found dead by this beat: prune their rooms
    stored_bytes: int
    stored_rooms: int
    budget_level: float  # the new-room budget's level of every process together


def parse_participants(text: bytes | str) -> list[ClientId]:
    raw = text.decode("ascii") if isinstance(text, bytes) else text
    return [c for c in map(parse_client_id, raw.split(",")) if c is not None] if raw else []


class Scripts(Protocol):
    """Runs a script in Valkey: ``resp.Pipeline``, or ``CoredisScripts`` for Sentinel."""

    async def run(
        self, script: Script, keys: Sequence[str], args: Sequence[str | bytes | int]
    ) -> object: ...


@final
class CoredisScripts:
    """Scripts through coredis's client, which follows a Sentinel failover."""

    def __init__(self, client: coredis.Redis[bytes]) -> None:
        self._client = client

    async def run(
        self, script: Script, keys: Sequence[str], args: Sequence[str | bytes | int]
    ) -> object:
        try:
            return await self._client.evalsha(script.sha, keys=list(keys), args=list(args))
        except coredis.exceptions.NoScriptError:
            await self._client.script_load(script.source)
            return await self._client.evalsha(script.sha, keys=list(keys), args=list(args))


@final
class ValkeyOrder:
    """The scripts of shared rooms, on one Valkey client (owned by the caller)."""

    def __init__(
        self, client: coredis.Redis[bytes], scripts: Scripts, quota: Quota, retention: Retention
    ) -> None:
        self._client = client
        self._scripts = scripts
        self.quota = quota
        confirmed, unconfirmed = retention.confirmed_ms, retention.unconfirmed_ms
        self._retention: list[int] = [
            FOREVER if confirmed is None else confirmed,
            FOREVER if unconfirmed is None else unconfirmed,
            retention.tombstone_ms,
        ]
        self._join = Script(room_scripts.JOIN)
        self._leave = Script(room_scripts.LEAVE)
        self._post = Script(room_scripts.POST)
        self._clear = Script(room_scripts.CLEAR)
        self._signal = Script(room_scripts.SIGNAL)
        self._prune = Script(room_scripts.PRUNE)
        self._heartbeat = Script(room_scripts.HEARTBEAT)

    async def join(
        self, room_id: RoomId, process: str, conn: str, client_id: ClientId, verifier: bytes,
        max_connections: int,
    ) -> Joined | Refusal:  # fmt: skip
        reply = await self._call(
            self._join,
            [keys.meta(room_id), keys.history(room_id), keys.presence(room_id), keys.PROCESSES,
             keys.process_rooms(process), keys.QUOTA, keys.events(room_id)],
            [conn, client_id, verifier, max_connections, room_bytes(room_id), room_id],
        )  # fmt: skip
        answer = cast("list[object]", reply)
        if answer[0] != b"ok":
            return Refusal(cast("bytes", answer[0]).decode("ascii"))
        _, ev, people, history = answer
        return Joined(
            cast("int", ev), parse_participants(cast("bytes", people)),
            cast("list[bytes]", history),
        )  # fmt: skip

    async def leave(self, room_id: RoomId, process: str, conn: str) -> None:
        await self._call(
            self._leave,
            [keys.meta(room_id), keys.presence(room_id), keys.events(room_id),
             keys.process_rooms(process)],
            [conn, room_id],
        )  # fmt: skip

    async def post(
        self, room_id: RoomId, cap: int, messages: Sequence[tuple[ClientId, str, str]]
    ) -> list[int]:
        """Append and publish ``messages`` (sender, IV, ciphertext); each one's id, 0 if refused."""
        args: list[str | bytes | int] = [cap, self.quota.max_bytes, MESSAGE_OVERHEAD_BYTES]
        for sender, iv, ciphertext in messages:
            args += [sender, iv, ciphertext, stored_bytes(sender, iv, ciphertext)]
        reply = await self._call(
            self._post,
            [keys.meta(room_id), keys.history(room_id), keys.presence(room_id), keys.QUOTA,
             keys.events(room_id)],
            args,
        )  # fmt: skip
        return cast("list[int]", reply)

    async def clear(self, room_id: RoomId, by: ClientId, cooldown_ms: int) -> bool:
        """Delete the history and publish it; False if the room was cleared too recently."""
        reply = await self._call(
            self._clear,
            [keys.meta(room_id), keys.history(room_id), keys.presence(room_id), keys.QUOTA,
             keys.events(room_id)],
            [by, cooldown_ms],
        )  # fmt: skip
        return reply == 1

    async def signal(self, room_id: RoomId, conn: str, text: str) -> None:
        await self._call(self._signal, [keys.meta(room_id), keys.events(room_id)], [conn, text])

    async def prune(self, room_id: RoomId) -> None:
        """Drop the room's connections whose process stopped heartbeating."""
        await self._call(
            self._prune,
            [keys.meta(room_id), keys.presence(room_id), keys.PROCESSES, keys.events(room_id)],
            [],
        )

    async def heartbeat(
        self, process: str, lifetime_ms: int, beaten: bool, new_rooms: int, budget: BudgetSettings
    ) -> Beat:
        drain_per_ms = budget.rooms_per_minute / 60_000
        reply = await self._call(
            self._heartbeat,
            [keys.PROCESSES, keys.QUOTA, keys.BUDGET],
            [process, lifetime_ms, int(beaten), new_rooms, repr(drain_per_ms),
             budget.burst + MAX_EXCESS],
        )  # fmt: skip
        lost, size, rooms, level, *dead = cast("list[object]", reply)
        return Beat(
            lost == 1, [cast("bytes", d).decode("ascii") for d in dead],
            cast("int", size), cast("int", rooms), float(cast("bytes", level)),
        )  # fmt: skip

    async def rooms_of(self, process: str) -> list[RoomId]:
        """The rooms a (dead) process had members in."""
        try:
            members = await self._client.smembers(keys.process_rooms(process))
        except _UNREACHABLE as exc:
            raise StorageUnavailable(str(exc)) from None
        return [RoomId(m.decode("ascii")) for m in members]

    async def forget(self, process: str) -> None:
        """Forget a dead process whose rooms have been pruned."""
        try:
            await self._client.delete([keys.process_rooms(process)])
        except _UNREACHABLE as exc:
            raise StorageUnavailable(str(exc)) from None

    async def retire(self, process: str) -> None:
        """Mark this process dead now (it is stopping): the next heartbeat of any
        process prunes its rooms, whatever leaves it could not finish."""
        try:
            await self._client.zadd(keys.PROCESSES, {process: 0})
        except _UNREACHABLE as exc:
            raise StorageUnavailable(str(exc)) from None

    async def _call(
        self, script: Script, keys_: list[str], args: list[str | bytes | int]
    ) -> object:
        try:
            reply: object = await self._scripts.run(script, keys_, [*self._retention, *args])
        except (*_UNREACHABLE, Unreachable) as exc:
            raise StorageUnavailable(str(exc)) from None
        return reply
