"""New rooms under pressure on a real server: challenge, proof, bad_proof, 4408, recovery.

The budgets here are tiny (a burst of 1 or 2, draining a room every 100 minutes)
so that pressure comes from a handful of rooms; the proofs are 14 to 16 bits,
milliseconds for the Python solver.
"""

from pathlib import Path
from typing import Any

import pytest
import trio

from securechat.budget import BASE_BITS
from securechat.peer.b64 import b64url_decode, b64url_encode
from securechat.peer.pow import solve_some
from tests.harness import (
    Peer,
    ServerHandle,
    connect,
    joined_peer,
    make_config,
    new_room_id,
    new_token,
    start_server,
)

SLOW_DRAIN = 0.01  # new rooms per minute: no room drains away during a test


async def pressured_server(nursery: trio.Nursery, tmp_path: Path, **overrides: Any) -> ServerHandle:
    options: dict[str, Any] = {"new_rooms_per_minute": SLOW_DRAIN, "new_rooms_burst": 1}
    return await start_server(nursery, make_config(tmp_path / "data", **options | overrides))


def prove(challenge: dict[str, Any]) -> str:
    raw = b64url_decode(challenge["challenge"])
    nonce = solve_some(raw, challenge["bits"], 0, 1 << 30)
    assert nonce is not None
    return b64url_encode(nonce)


async def challenged(peer: Peer, token: str) -> dict[str, Any]:
    await peer.send({"type": "hello", "auth": token})
    challenge = await peer.expect("challenge")
    assert len(b64url_decode(challenge["challenge"])) == 16
    return challenge


async def answer(peer: Peer, token: str, challenge: dict[str, Any]) -> None:
    await peer.send({"type": "hello", "auth": token, "proof": prove(challenge)})
    await peer.expect("history", messages=[])
    await peer.expect("system", event="connected")


async def test_the_room_past_the_budget_is_challenged_and_a_proof_admits(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = await pressured_server(nursery, tmp_path)
    await joined_peer(nursery, server, new_room_id(), new_token())  # the burst of 1: free
    room, token = new_room_id(), new_token()
    peer = await connect(nursery, server, room)
    challenge = await challenged(peer, token)
    assert challenge["bits"] == BASE_BITS
    # Nothing of the room before the proof: a message is refused as before hello.
    await peer.post()
    await peer.expect("error", code="not_authenticated")
    await answer(peer, token, challenge)
    # In: it chats, and the token it proved with became the verifier.
    sent = await peer.post()
    await peer.expect("message", iv=sent["iv"])
    intruder = await connect(nursery, server, room)
    await intruder.send({"type": "hello", "auth": new_token()})
    assert await intruder.closed_with() == 4401
    await server.stop()


async def test_the_price_rises_with_each_doubling_of_the_excess(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = await pressured_server(nursery, tmp_path)
    await joined_peer(nursery, server, new_room_id(), new_token())
    prices = []
    for _ in range(4):
        peer, token = await connect(nursery, server, new_room_id()), new_token()
        challenge = await challenged(peer, token)
        prices.append(challenge["bits"])
        await answer(peer, token, challenge)
    assert prices == [BASE_BITS, BASE_BITS + 1, BASE_BITS + 1, BASE_BITS + 2]
    await server.stop()


async def test_a_wrong_proof_is_bad_proof_and_the_socket_may_retry(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = await pressured_server(nursery, tmp_path)
    await joined_peer(nursery, server, new_room_id(), new_token())
    peer, token = await connect(nursery, server, new_room_id()), new_token()
    challenge = await challenged(peer, token)
    raw = b64url_decode(challenge["challenge"])
    wrong = next(  # a nonce that misses by construction
        n for n in range(1 << 20) if solve_some(raw, challenge["bits"], n, 1) is None
    )
    await peer.send({"type": "hello", "auth": token, "proof": b64url_encode(bytes([wrong]))})
    error = await peer.expect("error", code="bad_proof")
    assert "does not hold" in error["message"]
    await peer.send({"type": "hello", "auth": token})  # ignoring the challenge is no way out
    await peer.expect("error", code="bad_proof")
    await answer(peer, token, challenge)
    await server.stop()


async def test_a_proof_without_a_challenge_is_bad_proof(
    nursery: trio.Nursery, server: ServerHandle
) -> None:
    peer, token = await connect(nursery, server, new_room_id()), new_token()
    await peer.send({"type": "hello", "auth": token, "proof": "AAAAAAAAAAA"})
    await peer.expect("error", code="bad_proof", message="no challenge to answer")
    await peer.hello(token)  # below the budget a plain hello is exactly as before


async def test_existing_rooms_are_never_challenged_under_pressure(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = await pressured_server(nursery, tmp_path)
    live, live_token = new_room_id(), new_token()
    await joined_peer(nursery, server, live, live_token)  # spends the whole burst
    stranger = await connect(nursery, server, new_room_id())
    await challenged(stranger, new_token())  # the server is under pressure
    await joined_peer(nursery, server, live, live_token)  # a live room: no challenge
    # A stored room, after a restart (its actor is gone): no challenge either, and
    # a wrong token for it is still 4401, not a challenge.
    server = await server.restart()
    await joined_peer(nursery, server, new_room_id(), new_token())  # pressure again
    await challenged(await connect(nursery, server, new_room_id()), new_token())
    await joined_peer(nursery, server, live, live_token)
    intruder = await connect(nursery, server, live)
    await intruder.send({"type": "hello", "auth": new_token()})
    assert await intruder.closed_with() == 4401
    await server.stop()


async def test_an_unanswered_challenge_closes_4408(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("securechat.connection.CHALLENGE_SECONDS", 0.5)
    # The hello timeout alone would close it sooner: the challenge's time replaces it.
    server = await pressured_server(nursery, tmp_path, hello_timeout=0.2)
    await joined_peer(nursery, server, new_room_id(), new_token())
    peer = await connect(nursery, server, new_room_id())
    await challenged(peer, new_token())
    start = trio.current_time()
    assert await peer.closed_with() == 4408
    assert trio.current_time() - start >= 0.3  # the challenge's 0.5 s, not the 0.2 s
    await server.stop()


async def test_the_price_falls_back_to_zero_when_quiet(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    # Drains a room every 2 s: the second room within 2 s is challenged (the margin
    # is for slow machines), and once quiet a room is free again.
    server = await pressured_server(nursery, tmp_path, new_rooms_per_minute=30.0)
    await joined_peer(nursery, server, new_room_id(), new_token())
    await challenged(await connect(nursery, server, new_room_id()), new_token())
    with trio.fail_after(10):
        while True:
            await trio.sleep(0.5)
            peer, token = await connect(nursery, server, new_room_id()), new_token()
            await peer.send({"type": "hello", "auth": token})
            if (await peer.receive())["type"] == "history":
                break
    await server.stop()


async def test_one_busy_address_is_priced_by_its_own_budget(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    # Every test client is 127.0.0.1, one source: its budget of 2 is spent first.
    server = await pressured_server(
        nursery,
        tmp_path,
        new_rooms_burst=1000,
        source_new_rooms_per_minute=SLOW_DRAIN,
        source_new_rooms_burst=2,
    )
    for _ in range(2):
        await joined_peer(nursery, server, new_room_id(), new_token())
    peer, token = await connect(nursery, server, new_room_id()), new_token()
    await answer(peer, token, await challenged(peer, token))
    await server.stop()
