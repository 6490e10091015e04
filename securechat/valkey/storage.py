"""``ValkeyStorage``: the rooms in Valkey (or Redis >= 7), for one relay process.

What is stored is what SQLite stores, nothing more: per room a hash (the verifier,
``last_id``, ``last_active``, the creator until a second clientId joins,
``confirmed_at``, and ``bytes``, the stored size of its history, so the quota can be
recounted without reading every message) and a list of its messages, each as the
relay sends it (id, sender, server time, IV, ciphertext). Every change of a room is
one atomic script (``scripts.WRITE``), which also publishes each appended message
on the room's channel; nothing subscribes yet.

Retention is key expiry, refreshed by every write: there is no sweep. The quota's
counts are this process's view: rebuilt by a scan when storage opens and at every
``sweep`` (so expired rooms leave the counts), moved by each write's reply between.
"""

import logging
import time
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from typing import Final, cast, final

import coredis
import coredis.exceptions
import msgspec
import trio
from coredis.tokens import PureToken

from securechat.protocol import ClientId, MessageOut, RoomId, encode
from securechat.storage import (
    MESSAGE_OVERHEAD_BYTES,
    Append,
    Clear,
    Confirm,
    Quota,
    Retention,
    RoomMeta,
    RoomRecord,
    SetVerifier,
    StorageError,
    StorageUnavailable,
    Touch,
    Write,
    message_bytes,
    room_bytes,
)
from securechat.valkey import keys, scripts
from securechat.valkey.client import connect
from securechat.valkey.url import ValkeyTarget, parse_valkey_url

logger: Final = logging.getLogger("securechat.valkey.storage")

SCAN_COUNT: Final = 500  # keys asked for per SCAN step while recounting
RECOUNT_HELD_SECONDS: Final = 300.0  # a recount's claim, if its process dies mid-scan
FOREVER: Final = -1  # a retention of None: the keys never expire

_decode_message = msgspec.json.Decoder(MessageOut).decode


class WriteRefused(Exception):
    """Valkey refused a batch (an id out of order, another verifier): nothing changed."""


@final
class ValkeyStorage:
    """A ``Storage`` on one Valkey client; ``open_valkey`` makes it and closes the client.

    Resource handling: the client's connection pool is owned by ``open_valkey``'s
    context; ``close`` has nothing to release.

    Error handling: a refused batch raises ``WriteRefused``; a lost connection raises
    coredis's ``ConnectionError`` after its retries, as a SQLite failure would raise.
    """

    def __init__(self, client: coredis.Redis[bytes], quota: Quota, retention: Retention) -> None:
        self._client = client
        self._quota = quota
        self._retention = retention
        self._write = client.register_script(scripts.WRITE)
        self._load = client.register_script(scripts.LOAD)

    @property
    def quota(self) -> Quota:
        return self._quota

    @property
    def client(self) -> coredis.Redis[bytes]:
        """The client, for the shared rooms' scripts (securechat/valkey/shared.py)."""
        return self._client

    async def load_meta(self, room_id: RoomId) -> RoomMeta | None:
        try:
            fields = await self._client.hmget(
                keys.meta(room_id), ["verifier", "confirmed_at", "last_active"]
            )
        except (coredis.exceptions.ConnectionError, TimeoutError, OSError) as exc:
            raise StorageUnavailable(str(exc)) from None
        verifier, confirmed_at, last_active = fields
        if verifier is None:
            return None
        confirmed = confirmed_at is not None
        return RoomMeta(verifier, confirmed=confirmed, swept=confirmed and self._swept(last_active))

    async def load(self, room_id: RoomId) -> RoomRecord:
        reply: object = await self._load(keys=[keys.meta(room_id), keys.history(room_id)])
        fields, history = cast("tuple[list[bytes | None], list[bytes]]", reply)
        verifier, last_id, last_active, creator, confirmed_at = fields
        if last_id is None:
            return RoomRecord()
        confirmed = confirmed_at is not None
        return RoomRecord(
            verifier=verifier,
            last_id=int(last_id),
            last_active=int(last_active or 0),
            creator=None if creator is None else ClientId(creator.decode("ascii")),
            confirmed=confirmed,
            swept=confirmed and self._swept(last_active),
            sizes=tuple(message_bytes(_decode_message(text)) for text in history),
        )

    async def load_history(self, room_id: RoomId) -> list[MessageOut]:
        texts = await self._client.lrange(keys.history(room_id), 0, -1)
        return [_decode_message(text) for text in texts]

    async def write(self, room_id: RoomId, writes: Sequence[Write], now_ms: int) -> None:
        confirmed, unconfirmed = self._retention.confirmed_ms, self._retention.unconfirmed_ms
        args: list[str | bytes | int] = [
            now_ms,
            FOREVER if confirmed is None else confirmed,
            FOREVER if unconfirmed is None else unconfirmed,
            self._retention.tombstone_ms,
            room_bytes(room_id),
            MESSAGE_OVERHEAD_BYTES,
            keys.channel(room_id),
        ]
        for write in writes:
            args.extend(_op(write))
        try:
            reply: object = await self._write(
                keys=[keys.meta(room_id), keys.history(room_id), keys.QUOTA], args=args
            )
        except coredis.exceptions.ResponseError as exc:
            if scripts.REFUSED not in str(exc):
                raise
            raise WriteRefused(str(exc).partition(scripts.REFUSED)[2].strip()) from None
        grown, added = cast("list[int]", reply)
        self._quota.stored_bytes += grown
        self._quota.stored_rooms += added

    async def sweep(self, now_ms: int, retention: Retention, active: Collection[RoomId]) -> int:
        """Nothing to delete (key expiry has done it): recount the quota; return 0."""
        try:
            await self.recount()
        except (coredis.exceptions.RedisError, TimeoutError, OSError) as exc:
            logger.warning("the quota's recount failed (%s); the next sweep tries again", exc)
        return 0

    async def recount(self) -> None:
        """Rebuild the stored bytes and rooms of all processes from every room's hash.

        A scan, at start and at each sweep, by one process at a time: the others
        skip theirs while ``keys.RECOUNT`` is held (at most ``RECOUNT_HELD_SECONDS``).
        The scripts move the counts between.
        Writes during a scan can leave them off by what those writes stored: the next
        recount corrects it. This process's quota then reads the counts.
        """
        held = int(RECOUNT_HELD_SECONDS * 1000)
        if await self._client.set(keys.RECOUNT, b"1", condition=PureToken.NX, px=held):
            rooms = stored = 0
            async for key in self._client.scan_iter(match=keys.META_PATTERN, count=SCAN_COUNT):
                room_id = keys.room_of(key.decode("ascii", "replace"))
                if room_id is None:
                    continue
                size = await self._client.hget(key, "bytes")
                has_history = await self._client.exists([keys.history(room_id)])
                rooms += 1
                stored += room_bytes(room_id) + (int(size or 0) if has_history else 0)
            await self._client.hset(keys.QUOTA, {"bytes": stored, "rooms": rooms})
            await self._client.delete([keys.RECOUNT])
        size, rooms_ = await self._client.hmget(keys.QUOTA, ["bytes", "rooms"])
        self._quota.stored_bytes, self._quota.stored_rooms = int(size or 0), int(rooms_ or 0)

    async def answers(self, seconds: float) -> bool:
        """Whether Valkey answers a PING within ``seconds`` (never raises)."""
        with trio.move_on_after(seconds):
            try:
                await self._client.ping()
            except (coredis.exceptions.RedisError, OSError):
                return False
            return True
        return False

    def close(self) -> None:
        """Nothing to do: ``open_valkey`` closes the client when its context ends."""

    def _swept(self, last_active: bytes | None) -> bool:
        """Whether a confirmed room's history has expired (its tombstone is what is left)."""
        kept = self._retention.confirmed_ms
        now = time.time_ns() // 1_000_000
        return kept is not None and now - int(last_active or 0) >= kept


def _op(write: Write) -> list[str | bytes | int]:
    match write:
        case SetVerifier(verifier=verifier, creator=creator):
            return [scripts.OP_VERIFIER, verifier, creator or ""]
        case Confirm():
            return [scripts.OP_CONFIRM]
        case Touch():
            return [scripts.OP_TOUCH]
        case Append(message=m, keep=keep):
            return [scripts.OP_APPEND, m.id, keep, message_bytes(m), encode(m)]
        case Clear():
            return [scripts.OP_CLEAR]


@asynccontextmanager
async def open_valkey(
    url: str | ValkeyTarget, quota: Quota | None = None, retention: Retention | None = None
) -> AsyncIterator[ValkeyStorage]:
    """Connect, check that Valkey answers, count what is stored; close on exit.

    Error handling: ``StorageError`` (naming the target, never its password) if the
    URL is bad or Valkey cannot be reached.
    """
    try:
        target = url if isinstance(url, ValkeyTarget) else parse_valkey_url(url)
    except ValueError as exc:
        raise StorageError(str(exc)) from None
    kept = retention or Retention(confirmed_ms=None, unconfirmed_ms=None, tombstone_ms=0)
    failure: Exception | None = None
    async with connect(target) as client:
        storage = ValkeyStorage(client, quota or Quota.unlimited(), kept)
        try:
            await client.ping()
            await storage.recount()
        except (coredis.exceptions.RedisError, OSError) as exc:
            failure = exc  # raised outside the client's task group: not in a group
        if failure is None:
            yield storage
    if failure is not None:
        raise StorageError(f"cannot use Valkey at {target.describe()}: {failure}") from failure
