"""Valkey storage against a real redis-server: atomic batches, set-if-absent, expiry, publish."""

from collections.abc import AsyncIterator

import coredis
import pytest
import trio

from securechat.protocol import ClientId, MessageOut, RoomId, encode
from securechat.room import now_ms
from securechat.storage import (
    Append,
    Clear,
    Confirm,
    Quota,
    Retention,
    RoomMeta,
    SetVerifier,
    StorageError,
    Touch,
    Write,
    message_bytes,
    room_bytes,
)
from securechat.valkey import keys
from securechat.valkey.client import connect
from securechat.valkey.storage import ValkeyStorage, WriteRefused, open_valkey
from securechat.valkey.url import parse_valkey_url
from tests.valkey import Valkey

ROOM = RoomId("room")
KEPT = Retention(confirmed_ms=60_000, unconfirmed_ms=20_000, tombstone_ms=600_000)


def message(i: int, text: str = "") -> MessageOut:
    return MessageOut(
        id=i, sender=ClientId("alice"), sent_at=i, iv="AAAAAAAAAAAAAAAA", ciphertext=text or f"c{i}"
    )


@pytest.fixture
async def client(valkey: Valkey) -> AsyncIterator[coredis.Redis[bytes]]:
    """A second client on the same server: what another process, or an operator, sees."""
    async with connect(parse_valkey_url(valkey.url)) as raw:
        yield raw


@pytest.fixture
async def storage(valkey: Valkey) -> AsyncIterator[ValkeyStorage]:
    async with open_valkey(valkey.url, Quota.unlimited(), KEPT) as opened:
        yield opened


async def test_a_batch_with_a_wrong_id_is_refused_and_changes_nothing(
    storage: ValkeyStorage, client: coredis.Redis[bytes]
) -> None:
    await storage.write(ROOM, [SetVerifier(b"v" * 32), Append(message(1), keep=10)], 5)
    before = await client.hgetall(keys.meta(ROOM))
    counted = storage.quota.stored_bytes
    batches: list[list[Write]] = [
        [Append(message(3), keep=10)],  # a gap
        [Append(message(1), keep=10)],  # a duplicate
        [Touch(), Clear(), Append(message(2), keep=10), Append(message(4), keep=10)],
    ]
    for batch in batches:
        with pytest.raises(WriteRefused, match="not the next one"):
            await storage.write(ROOM, batch, 9)
    assert await client.hgetall(keys.meta(ROOM)) == before  # last_active included
    assert [m.id for m in await storage.load_history(ROOM)] == [1]
    assert storage.quota.stored_bytes == counted
    await storage.write(ROOM, [Append(message(2), keep=10)], 10)  # the right id goes in
    assert (await storage.load(ROOM)).last_id == 2


async def test_the_first_verifier_is_set_only_if_absent(valkey: Valkey) -> None:
    # Two storages on one server, as two relay processes would be: the first verifier wins.
    async with open_valkey(valkey.url) as first, open_valkey(valkey.url) as second:
        await first.write(ROOM, [SetVerifier(b"v" * 32, ClientId("alice"))], 1)
        with pytest.raises(WriteRefused, match="another verifier"):
            await second.write(ROOM, [SetVerifier(b"w" * 32, ClientId("bobby"))], 2)
        await second.write(ROOM, [SetVerifier(b"v" * 32, ClientId("bobby"))], 3)  # the same
        record = await second.load(ROOM)
        assert (record.verifier, record.creator) == (b"v" * 32, "alice")
        assert await first.load_meta(ROOM) == RoomMeta(b"v" * 32, confirmed=False, swept=False)


async def test_retention_is_the_expiry_of_the_room_keys(
    storage: ValkeyStorage, client: coredis.Redis[bytes], valkey: Valkey
) -> None:
    meta, history = keys.meta(ROOM), keys.history(ROOM)
    await storage.write(ROOM, [SetVerifier(b"v" * 32), Append(message(1), keep=10)], 1)
    # Unconfirmed: the whole room goes after unconfirmed_ms.
    assert 19_000 < await client.pttl(meta) <= 20_000
    assert 19_000 < await client.pttl(history) <= 20_000
    await storage.write(ROOM, [Confirm()], 2)
    # Confirmed: the history after confirmed_ms, the verifier (tombstone) later still.
    assert 59_000 < await client.pttl(history) <= 60_000
    assert 659_000 < await client.pttl(meta) <= 660_000
    async with open_valkey(valkey.url, retention=Retention(None, None, tombstone_ms=0)) as forever:
        await forever.write(ROOM, [Touch()], 3)
        assert await client.pttl(meta) == -1
        assert await client.pttl(history) == -1


async def test_expired_rooms_are_gone_and_a_tombstone_stays(valkey: Valkey) -> None:
    short = Retention(confirmed_ms=200, unconfirmed_ms=200, tombstone_ms=60_000)
    other = RoomId("other")
    async with open_valkey(valkey.url, Quota.unlimited(), short) as storage:
        # Real times: whether a room is a tombstone is read from its last activity.
        await storage.write(ROOM, [SetVerifier(b"v" * 32), Confirm()], now_ms())
        await storage.write(ROOM, [Append(message(1), keep=10)], now_ms())
        await storage.write(other, [SetVerifier(b"w" * 32)], now_ms())
        await trio.sleep(0.4)
        assert await storage.load_meta(other) is None  # unconfirmed: gone whole
        assert await storage.load_meta(ROOM) == RoomMeta(b"v" * 32, confirmed=True, swept=True)
        assert await storage.load_history(ROOM) == []
        assert await storage.sweep(0, short, active=set()) == 0  # expiry did it
        assert (storage.quota.stored_rooms, storage.quota.stored_bytes) == (1, room_bytes(ROOM))
        await storage.write(ROOM, [Append(message(2), keep=10)], now_ms())  # ids go on
        assert await storage.load_meta(ROOM) == RoomMeta(b"v" * 32, confirmed=True, swept=False)
        assert [m.id for m in await storage.load_history(ROOM)] == [2]


async def test_each_appended_message_is_published_on_the_room_channel(
    storage: ValkeyStorage, client: coredis.Redis[bytes]
) -> None:
    sent = [message(1, "first"), message(2, "second")]
    async with client.pubsub(
        channels=[keys.channel(ROOM)], ignore_subscribe_messages=True
    ) as pubsub:
        await storage.write(ROOM, [SetVerifier(b"v" * 32), Append(sent[0], keep=10)], 1)
        await storage.write(ROOM, [Append(sent[1], keep=10), Clear()], 2)
        received: list[bytes] = []
        with trio.fail_after(5):
            async for item in pubsub:
                data = item["data"]
                if item["type"] == "message" and isinstance(data, bytes):
                    received.append(data)
                if len(received) == len(sent):
                    break
    assert received == [encode(m).encode() for m in sent]


async def test_the_keys_hold_no_more_than_sqlite_does(
    storage: ValkeyStorage, client: coredis.Redis[bytes]
) -> None:
    await storage.write(ROOM, [SetVerifier(b"v" * 32, ClientId("alice")), Append(message(1), 5)], 7)
    assert sorted(await client.keys("*")) == sorted(
        [keys.meta(ROOM).encode(), keys.history(ROOM).encode(), keys.QUOTA.encode()]
    )  # the quota: two counts for all rooms together
    assert await client.hgetall(keys.meta(ROOM)) == {
        b"verifier": b"v" * 32,
        b"last_id": b"1",
        b"last_active": b"7",
        b"creator": b"alice",
        b"bytes": str(message_bytes(message(1))).encode(),
    }
    await storage.write(ROOM, [Confirm()], 8)
    fields = await client.hgetall(keys.meta(ROOM))
    assert b"creator" not in fields
    assert fields[b"confirmed_at"] == b"8"


async def test_the_counts_follow_the_writes_and_match_a_recount(valkey: Valkey) -> None:
    async with open_valkey(valkey.url, Quota.unlimited(), KEPT) as storage:
        await storage.write(ROOM, [SetVerifier(b"v" * 32), Append(message(1, "a" * 100), 2)], 1)
        await storage.write(
            ROOM, [Append(message(2, "b" * 50), 2), Append(message(3, "c" * 70), 2)], 2
        )
        await storage.write(RoomId("other"), [Append(message(1, "d" * 30), 2), Clear()], 3)
        expected = (
            room_bytes(ROOM)
            + room_bytes(RoomId("other"))
            + message_bytes(message(2, "b" * 50))
            + message_bytes(message(3, "c" * 70))
        )
        assert (storage.quota.stored_rooms, storage.quota.stored_bytes) == (2, expected)
        assert (await storage.load(ROOM)).sizes == (
            message_bytes(message(2, "b" * 50)),
            message_bytes(message(3, "c" * 70)),
        )
    async with open_valkey(valkey.url, Quota(10**9, 10)) as reopened:
        assert (reopened.quota.stored_rooms, reopened.quota.stored_bytes) == (2, expected)


async def test_a_bad_url_is_a_readable_storage_error_without_the_password() -> None:
    with pytest.raises(StorageError, match="must start with redis://") as caught:
        async with open_valkey("http://user:s3cret@127.0.0.1:1/0"):
            pass
    assert "s3cret" not in str(caught.value)
