"""The scripts' lean RESP2 connections: the parser alone, then a real redis-server."""

from pathlib import Path

import pytest
import trio

from securechat.valkey.resp import (
    ErrorReply,
    Script,
    Unreachable,
    command,
    open_pipeline,
    parse,
)
from securechat.valkey.url import parse_valkey_url
from tests.valkey import Valkey, start_valkey


def test_replies_parse_whole_or_not_at_all() -> None:
    assert parse(b"+OK\r\n") == (b"OK", 5)
    assert parse(b":-42\r\n") == (-42, 6)
    assert parse(b"$3\r\nabc\r\n") == (b"abc", 9)
    assert parse(b"$-1\r\n") == (None, 5)
    nested = b"*3\r\n$2\r\nok\r\n:7\r\n*2\r\n$1\r\na\r\n$0\r\n\r\n"
    assert parse(nested) == ([b"ok", 7, [b"a", b""]], len(nested))
    for cut in range(len(nested)):
        assert parse(nested[:cut]) is None  # not all there yet: wait for more
    error, used = parse(b"-NOSCRIPT No matching script\r\n+OK\r\n") or (None, 0)
    assert isinstance(error, ErrorReply)
    assert str(error) == "NOSCRIPT No matching script"
    assert used == 30
    with pytest.raises(Unreachable):
        parse(b"?what\r\n")


def test_a_request_is_an_array_of_bulk_strings() -> None:
    assert command(b"EVALSHA", "ab", 1, b"k") == (
        b"*4\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n1\r\n$1\r\nk\r\n"
    )


async def test_scripts_load_once_and_replies_reach_their_callers(valkey: Valkey) -> None:
    echo = Script("return {KEYS[1], tonumber(ARGV[1]) + 1}")
    async with open_pipeline(parse_valkey_url(valkey.url)) as pipeline:
        results: dict[int, object] = {}

        async def call(n: int) -> None:
            results[n] = await pipeline.run(echo, [f"securechat:{n}"], [n])

        async with trio.open_nursery() as nursery:  # more callers than connections
            for n in range(20):
                nursery.start_soon(call, n)
        assert results == {n: [f"securechat:{n}".encode(), n + 1] for n in range(20)}
        with pytest.raises(ErrorReply, match="boom"):
            await pipeline.run(Script("return redis.error_reply('boom')"), [], [])


async def test_a_login_and_a_database_are_sent_first(tmp_path: Path) -> None:
    acl = tmp_path / "users.acl"
    acl.write_text("user default off\nuser relay on >s3cret ~* &* +@all\n")
    valkey = start_valkey(tmp_path / "v", extra=["--aclfile", str(acl)], auth=("relay", "s3cret"))
    try:
        good = parse_valkey_url(f"redis://relay:s3cret@127.0.0.1:{valkey.port}/3")
        async with open_pipeline(good) as pipeline:
            await pipeline.run(Script("redis.call('SET', KEYS[1], 'x')"), ["k"], [])
            assert await pipeline.call(command(b"SELECT", 3)) == b"OK"
            assert await pipeline.call(command(b"GET", b"k")) == b"x"
            assert await pipeline.call(command(b"SELECT", 0)) == b"OK"
        bad = parse_valkey_url(f"redis://relay:wrong@127.0.0.1:{valkey.port}/0")
        async with open_pipeline(bad) as pipeline:
            with pytest.raises(Unreachable, match="WRONGPASS"):
                await pipeline.call(command(b"PING"))
    finally:
        valkey.stop()


async def test_a_lost_valkey_is_unreachable_then_found_again(tmp_path: Path) -> None:
    valkey = start_valkey(tmp_path / "v")
    try:
        async with open_pipeline(parse_valkey_url(valkey.url)) as pipeline:
            assert await pipeline.call(command(b"PING")) == b"PONG"
            valkey.process.kill()
            valkey.process.wait()
            with pytest.raises(Unreachable):
                await pipeline.call(command(b"PING"))
            valkey = start_valkey(tmp_path / "v", port=valkey.port)
            assert await pipeline.call(command(b"PING")) == b"PONG"
    finally:
        valkey.stop()
