"""``serve --valkey redis+sentinel://``: a relay that follows a failover by itself.

Real processes only: a primary, its replica, a sentinel (tests/sentinel.py) and a
relay. The primary is killed with SIGKILL; the sentinel promotes the replica, and
the relay, never restarted, serves the room again from the new primary.
"""

import http.client
import time
from pathlib import Path
from typing import Any

import coredis.exceptions
import pytest
import trio
from trio_websocket import ConnectionClosed

from securechat.storage import StorageError
from securechat.valkey.client import connect
from securechat.valkey.storage import open_valkey
from securechat.valkey.url import parse_valkey_url
from tests.harness import Peer, joined_peer, new_room_id, new_token
from tests.harness import connect as connect_peer
from tests.process import ServerProcess, start_process
from tests.sentinel import SERVICE, Failover, Server, make_certificate, running_failover
from tests.valkey import _free_port as free_port

pytestmark = pytest.mark.slow

FAILOVER_SECONDS = 20.0  # down after 0.5 s, then one election and a promotion: ~2 s here


def _offset(server: Server, field: bytes) -> int:
    info = server.command("INFO", "replication")
    line = next(line for line in info.split(b"\r\n") if line.startswith(field + b":"))
    return int(line.partition(b":")[2])


async def _wait_replicated(failover: Failover) -> None:
    """Until the replica has everything the primary had written when called.

    Replication is asynchronous: what the primary acknowledged and the replica had
    not received is lost with the primary. The test checks only what got across.
    """
    written = _offset(failover.primary, b"master_repl_offset")
    with trio.fail_after(10):
        while True:
            if _offset(failover.replica, b"slave_repl_offset") >= written:
                return
            await trio.sleep(0.02)


async def _chat_again(
    nursery: trio.Nursery, server: ServerProcess, room: str, token: str
) -> tuple[dict[str, Any], list[str], list[object]]:
    """A new member, retried as a client would, until its hello is answered and its
    post echoed: its history, what it posted, and each transient answer it met."""
    posted: list[str] = []
    transient: list[object] = []
    with trio.fail_after(FAILOVER_SECONDS):
        while True:
            peer = await connect_peer(nursery, server, room)
            await peer.send({"type": "hello", "auth": token})
            history = await _answer(peer)
            if isinstance(history, dict):
                assert history["type"] == "history", history
                message = await peer.post()
                posted.append(message["ciphertext"])
                echo = await _answer(peer)
                if isinstance(echo, dict) and echo["type"] == "message":
                    assert echo["ciphertext"] == posted[-1]
                    return history, posted, transient
            else:
                echo = history
            # Valkey unreachable (1013, ``unavailable``) or the relay resynchronising
            # after its subscriber reconnected (1012): a client tries again.
            assert echo in (1012, 1013) or _is_unavailable(echo), echo
            transient.append(echo)
            await trio.sleep(0.1)


def _readyz(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/readyz")
        return conn.getresponse().status
    finally:
        conn.close()


def _is_unavailable(answer: object) -> bool:
    return isinstance(answer, dict) and answer == {**answer, "type": "error", "code": "unavailable"}


async def _answer(peer: Peer) -> dict[str, Any] | int | None:
    """The next envelope that is not a system event, or the close code."""
    try:
        while (envelope := await peer.receive())["type"] == "system":
            pass
    except ConnectionClosed:
        return await peer.closed_with()
    return envelope


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
async def test_the_relay_follows_the_sentinel_to_the_new_primary(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tls: bool
) -> None:
    room, token = new_room_id(), new_token()
    certificate = make_certificate(tmp_path / "tls") if tls else None
    if certificate:  # the relay trusts it as a system CA (rediss+sentinel://)
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate.cert))
    with running_failover(tmp_path / "valkey", certificate=certificate) as failover:
        server = await start_process(tmp_path / "data", 0, "--valkey", failover.url)
        try:
            alice = await joined_peer(nursery, server, room, token)
            sent = [await alice.post() for _ in range(3)]
            before = [(await alice.expect("message"))["ciphertext"] for _ in sent]
            assert before == [m["ciphertext"] for m in sent]
            await _wait_replicated(failover)

            failover.primary.kill()
            killed = time.monotonic()
            # A post now meets a dead primary: an explicit error, never silence.
            late = await alice.post()
            answer = await _answer(alice)
            assert (
                _is_unavailable(answer)
                or answer == 1012
                or (isinstance(answer, dict) and answer["ciphertext"] == late["ciphertext"])
            ), answer
            if _is_unavailable(answer):  # seen in the outage: so is the readiness
                assert await trio.to_thread.run_sync(_readyz, server.port) == 503

            history, posted, transient = await _chat_again(nursery, server, room, token)
            served = time.monotonic() - killed
            assert failover.primary_port() == failover.replica.port  # the replica was promoted
            texts = [m["ciphertext"] for m in history["messages"]]
            assert texts[:3] == before  # every replicated message survived the failover
            assert set(texts[3:]) <= {late["ciphertext"], *posted}  # nothing else came
            assert [m["id"] for m in history["messages"]] == list(range(1, len(texts) + 1))

            stranger = await connect_peer(nursery, server, room)
            await stranger.send({"type": "hello", "auth": new_token()})
            assert await stranger.closed_with() == 4401  # the verifier came across too
            assert await trio.to_thread.run_sync(_readyz, server.port) == 200
            print(
                f"at the kill: {answer}; served after {served:.1f} s and {len(transient)} refusals"
            )
        finally:
            server.kill()
            output = await server.rest_of_output()
            await server.close()
    assert "Traceback" not in output, output  # every failure on the way was an expected one


async def test_the_primary_and_the_sentinel_each_take_their_own_password(
    tmp_path: Path,
) -> None:
    """Scripts (EVALSHA), pub/sub and a refusal, through the Sentinel-managed pool."""
    with running_failover(tmp_path / "valkey", "primary-pw", "sentinel-pw") as failover:
        place = f"127.0.0.1:{failover.sentinel.port}/{SERVICE}/0"
        url = f"redis+sentinel://:primary-pw@{place}?sentinel_password=sentinel-pw"
        with trio.fail_after(10):
            async with connect(parse_valkey_url(url)) as client:
                count = client.register_script("return redis.call('INCR', KEYS[1])")
                assert [await count(keys=["n"]), await count(keys=["n"])] == [1, 2]
                async with client.pubsub(channels=["events"]) as subscriber:
                    await client.publish("events", "one")
                    async for event in subscriber:
                        if event["type"] == "message":
                            assert event["data"] == b"one"
                            break
        wrong = f"redis+sentinel://:primary-pw@{place}?sentinel_password=not-it"
        with pytest.raises(
            StorageError, match="cannot use Valkey at redis\\+sentinel://"
        ) as caught:
            async with open_valkey(wrong):
                pass
        assert "-pw" not in str(caught.value)
        assert "not-it" not in str(caught.value)


async def test_no_sentinel_answering_stops_the_start_in_one_line() -> None:
    url = f"redis+sentinel://127.0.0.1:{free_port()},127.0.0.1:{free_port()}/{SERVICE}/0"
    with pytest.raises(StorageError) as caught:
        async with open_valkey(url):
            pass
    message = str(caught.value)
    assert message.startswith(f"cannot use Valkey at {parse_valkey_url(url).describe()}: ")
    assert "\n" not in message


async def test_a_primary_short_of_replicas_refuses_posts_and_the_relay_lives_on(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """``min-replicas-to-write``: NOREPLICAS is answered as an unreachable Valkey."""
    room, token = new_room_id(), new_token()
    with running_failover(tmp_path / "valkey") as failover:
        for name, value in (("min-replicas-to-write", "1"), ("min-replicas-max-lag", "1")):
            assert failover.primary.command("CONFIG", "SET", name, value) == b"+OK\r\n"
        server = await start_process(tmp_path / "data", 0, "--valkey", failover.url)
        try:
            alice = await joined_peer(nursery, server, room, token)
            failover.replica.kill()
            with trio.fail_after(10):  # until the primary counts the replica as lagging
                while True:
                    await alice.post()
                    if _is_unavailable(answer := await _answer(alice)):
                        break
                    assert isinstance(answer, dict), answer
                    assert answer["type"] == "message", answer
                    await trio.sleep(0.2)
            bob = await connect_peer(nursery, server, room)
            await bob.send({"type": "hello", "auth": token})
            assert await bob.closed_with() == 1013
            assert server.process.returncode is None  # the relay lives on
            failover.primary.command("CONFIG", "SET", "min-replicas-to-write", "0")
            await _chat_again(nursery, server, room, token)  # and serves again by itself
        finally:
            await server.close()


async def test_a_replica_refusing_writes_is_an_unreachable_valkey(tmp_path: Path) -> None:
    with running_failover(tmp_path / "valkey") as failover:
        target = parse_valkey_url(f"redis://127.0.0.1:{failover.replica.port}/0")
        async with connect(target) as client:
            assert await client.get("k") is None  # reads are fine
            with pytest.raises(coredis.exceptions.ConnectionError, match=r"^READONLY "):
                await client.set("k", "v")


async def test_rediss_sentinel_speaks_tls_to_the_sentinel_and_each_primary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    certificate = make_certificate(tmp_path / "tls")
    with running_failover(tmp_path / "valkey", certificate=certificate) as failover:
        url = failover.url
        # Not signed by a CA the system trusts: no sentinel is believed.
        with pytest.raises(StorageError, match="No primary found") as caught:
            async with open_valkey(url):
                pass
        assert "\n" not in str(caught.value)
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate.cert))  # now it is trusted
        with trio.fail_after(FAILOVER_SECONDS):
            async with connect(parse_valkey_url(url)) as client:
                count = client.register_script("return redis.call('INCR', KEYS[1])")
                assert await count(keys=["n"]) == 1
                await _wait_replicated(failover)
                failover.primary.kill()
                while True:  # the replica, promoted, is reached over TLS too
                    try:
                        assert await count(keys=["n"]) == 2
                        break
                    except coredis.exceptions.ConnectionError:
                        await trio.sleep(0.1)
                assert failover.primary_port() == failover.replica.port


async def test_a_sentinel_that_does_not_answer_is_passed_over(tmp_path: Path) -> None:
    with running_failover(tmp_path / "valkey") as failover:
        down = f"127.0.0.1:{free_port()}"  # nothing listens there
        url = f"redis+sentinel://{down},127.0.0.1:{failover.sentinel.port}/{SERVICE}/0"
        with trio.fail_after(10):
            async with open_valkey(url) as storage:
                assert await storage.client.set("k", "v")
                assert await storage.client.get("k") == b"v"
