"""Rooms spread over several relays on one Valkey, and the faults a deployment must survive.

Each test runs real processes on 127.0.0.1 (tests/relays.py): a redis-server with its
AOF on, three relays (two for Valkey's own fault), real WebSocket clients. Each
fault is its own test, with bounded posting loops and a deadline on every wait:
1. one room's members on three relays see one room: the same messages in the same
   order, history, clear, participants, signals and the participant cap as one
   process gives them;
2. a relay killed mid-chat: its clients rejoin another relay, nothing acknowledged
   is lost or doubled, and the dead relay's presence expires;
3. Valkey killed and restarted on its AOF: nothing acknowledged is lost; the relays
   refuse clearly meanwhile (``unavailable``, 1013, 503) and recover by themselves;
4. concurrent posts from three relays: one total order, no gaps, no duplicates;
5. the verifier outlives each of these: a wrong token gets 4401 on every relay.
"""

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest
import trio
from trio_websocket import ConnectionClosed

from securechat.limits import READY_TIMEOUT_SECONDS
from securechat.valkey.presence import HEARTBEAT_SECONDS, PRESENCE_TTL_SECONDS
from tests.harness import (
    WAIT,
    Peer,
    Urls,
    connect,
    fake_message,
    joined_peer,
    new_room_id,
    new_token,
)
from tests.relays import (
    Deployment,
    Listener,
    refused_with,
    rejoin,
    running_deployment,
    wait_readiness,
)
from tests.test_relay_signal import fake_signal, relayed

# How long a crashed relay's members may still be listed: its presence expires
# PRESENCE_TTL_SECONDS after its last beat, and the next beat of another relay buries
# it (securechat/valkey/presence.py); twice that, for a loaded machine.
PRESENCE_BOUND: Final = 2 * (PRESENCE_TTL_SECONDS + HEARTBEAT_SECONDS) + WAIT
VALKEY_BACK_SECONDS: Final = 20.0  # relays reconnect to a restarted Valkey with backoff
UNREADY_SECONDS: Final = READY_TIMEOUT_SECONDS + WAIT  # /readyz notices Valkey has gone
RETRY_SECONDS: Final = 0.25  # between tries while Valkey comes back: under the 5/s bucket
FAST: Final = ("--rate", "1000", "--burst", "1000")  # posting tests: no per-socket bucket runs dry


@pytest.fixture(scope="module")
def three_relays(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Three relays (fast buckets, default history) for this module's tests that kill nothing."""
    with running_deployment(tmp_path_factory.mktemp("spread"), 3, *FAST) as deployment:
        yield deployment


@pytest.fixture
def spread(three_relays: Deployment) -> Iterator[Deployment]:
    three_relays.ensure_running()
    yield three_relays
    three_relays.assert_running()


def ids(messages: list[dict[str, Any]]) -> list[int]:
    return [m["id"] for m in messages]


def by(sender: Peer, messages: list[dict[str, Any]]) -> list[str]:
    return [m["ciphertext"] for m in messages if m["from"] == sender.client_id]


def texts(sent: list[dict[str, str]]) -> list[str]:
    return [s["ciphertext"] for s in sent]


def relayed_to(message: dict[str, str]) -> Callable[[Listener], bool]:
    """Whether a listener has had ``message`` relayed to it."""

    def condition(listener: Listener) -> bool:
        return any(m["ciphertext"] == message["ciphertext"] for m in listener.messages)

    return condition


async def assert_token_refused_everywhere(
    nursery: trio.Nursery, relays: list[Urls], room: str
) -> None:
    for relay in relays:
        assert await refused_with(relay, room, new_token(), nursery) == 4401


# ----- 1. one room over three relays -------------------------------------------------------


async def test_members_on_three_relays_see_one_room(
    nursery: trio.Nursery, spread: Deployment
) -> None:
    room, token = new_room_id(), new_token()
    r0, r1, r2 = spread.relays
    members: list[Peer] = []
    for relay in (r0, r1, r2):
        peer = await connect(nursery, relay, room)
        history, connected = await peer.hello(token)
        assert history == {"type": "history", "cap": 10, "messages": []}
        members.append(peer)
        everyone = [m.client_id for m in members]
        assert connected["participants"] == everyone
        for earlier in members[:-1]:
            await earlier.expect("system", event="joined", clientId=peer.client_id,
                                 participants=everyone)  # fmt: skip
    alice, bob, carol = members

    # Names travel as signals: to every other member, on whichever relay, and not back.
    signal = fake_signal()
    await bob.send(signal)
    for peer in (alice, carol):
        assert await peer.receive() == relayed(bob, signal)

    # Five posts from each, all at once: one order for all, ids 1 to 15.
    sent: dict[str, list[dict[str, str]]] = {}

    async def post_five(peer: Peer) -> None:
        sent[peer.client_id] = [await peer.post() for _ in range(5)]

    async with trio.open_nursery() as posting:
        for peer in members:
            posting.start_soon(post_five, peer)
    seen = [[await peer.expect("message") for _ in range(15)] for peer in members]
    assert seen[0] == seen[1] == seen[2]
    assert ids(seen[0]) == list(range(1, 16))
    for peer in members:
        assert by(peer, seen[0]) == texts(sent[peer.client_id])

    # A late member on the first relay: the last ten, as everyone saw them.
    dave = await connect(nursery, r0, room)
    history, _ = await dave.hello(token)
    assert history["messages"] == seen[0][5:]
    for peer in members:
        await peer.expect("system", event="joined", clientId=dave.client_id)
    members.append(dave)

    # A clear on the third relay reaches every relay; ids go on from where they were.
    await carol.send({"type": "clear_history"})
    everyone = [m.client_id for m in members]
    for peer in members:
        await peer.expect("history_cleared", by=carol.client_id)
        await peer.expect("system", event="cleared", clientId=carol.client_id,
                          participants=everyone)  # fmt: skip
    await bob.send({"type": "clear_history"})  # the room's cooldown holds on every relay
    await bob.expect("error", code="rate_limited", message="slow down: frame dropped")
    eve = await connect(nursery, r1, room)
    history, _ = await eve.hello(token)
    assert history["messages"] == []
    for peer in members:
        await peer.expect("system", event="joined", clientId=eve.client_id)
    members.append(eve)
    await alice.post()
    for peer in members:
        await peer.expect("message", id=16, **{"from": alice.client_id})

    # Leaving, from the third relay: the others hear it with the participants left.
    await carol.ws.aclose()
    remaining = [m.client_id for m in members if m is not carol]
    for peer in members:
        if peer is not carol:
            await peer.expect("system", event="left", clientId=carol.client_id,
                              participants=remaining)  # fmt: skip
    await assert_token_refused_everywhere(nursery, list(spread.relays), room)


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[Deployment]:
    with running_deployment(tmp_path, 3, "--max-participants", "2") as deployment:
        yield deployment


async def test_the_participant_cap_counts_members_on_every_relay(
    nursery: trio.Nursery, capped: Deployment
) -> None:
    room, token = new_room_id(), new_token()
    r0, r1, r2 = capped.relays
    alice = await joined_peer(nursery, r0, room, token)
    bob = await joined_peer(nursery, r1, room, token)
    await alice.expect("system", event="joined", clientId=bob.client_id)
    # A wrong token learns nothing about capacity; the right one finds the room full,
    # on a relay with no member of it as on one with a member.
    assert await refused_with(r2, room, new_token(), nursery) == 4401
    for relay in (r2, r0):
        assert await refused_with(relay, room, token, nursery) == 4409
    await bob.ws.aclose()
    await alice.expect("system", event="left", clientId=bob.client_id)
    carol = await connect(nursery, r2, room)
    _, connected = await carol.hello(token)
    assert connected["participants"] == [alice.client_id, carol.client_id]
    await alice.expect("system", event="joined", clientId=carol.client_id)
    capped.assert_running()


# ----- 2. a relay killed mid-chat -----------------------------------------------------------

KILL_POSTS: Final = 30  # messages each of three members posts
KILL_AFTER: Final = 30  # messages the first member has seen when the relay is killed
POST_INTERVAL: Final = 0.02  # seconds between one member's posts: 50 a second each


@pytest.fixture
def killable(tmp_path: Path) -> Iterator[Deployment]:
    options = (*FAST, "--history", "1000")  # the whole chat stays in the history
    with running_deployment(tmp_path, 3, *options) as deployment:
        yield deployment


async def test_a_relay_killed_mid_chat_loses_nothing_acknowledged(
    nursery: trio.Nursery, killable: Deployment
) -> None:
    room, token = new_room_id(), new_token()
    relays = killable.relays
    alice = await joined_peer(nursery, relays[0], room, token)
    bob = await joined_peer(nursery, relays[1], room, token)  # rejoins elsewhere
    dave = await joined_peer(nursery, relays[1], room, token)  # does not come back
    carol = await joined_peer(nursery, relays[2], room, token)
    stayers = [Listener(p).start(nursery) for p in (alice, carol)]
    dave_listener = Listener(dave).start(nursery)
    bobs = [Listener(bob).start(nursery)]  # each of bob's connections in turn
    bob_histories: list[list[dict[str, Any]]] = []
    sent: dict[str, list[dict[str, str]]] = {p.client_id: [] for p in (alice, bob, carol)}

    async def post_steadily(peer: Peer) -> None:
        for _ in range(KILL_POSTS):
            sent[peer.client_id].append(await peer.post())
            await trio.sleep(POST_INTERVAL)

    async def bob_posts() -> None:
        """Bob's client: on a dead connection, rejoin the next relay, and post on."""
        while len(sent[bob.client_id]) < KILL_POSTS:
            current = bobs[-1]
            if current.ended:
                peer, history, index = await rejoin(nursery, relays, room, token,
                                                    bob.client_id, first=2)  # fmt: skip
                assert index != 1
                bob_histories.append(history["messages"])
                bobs.append(Listener(peer).start(nursery))
                continue
            message = fake_message()
            try:
                await current.peer.send(message)
            except ConnectionClosed:  # not sent, so never acknowledged
                await current.wait_for(lambda listener: listener.ended)
                continue
            sent[bob.client_id].append(message)
            await trio.sleep(POST_INTERVAL)

    async def kill_mid_chat() -> None:
        await stayers[0].wait_for(lambda listener: len(listener.messages) >= KILL_AFTER)
        killable.kill_relay(1)

    with trio.fail_after(30):
        async with trio.open_nursery() as chat:
            chat.start_soon(post_steadily, alice)
            chat.start_soon(post_steadily, carol)
            chat.start_soon(bob_posts)
            chat.start_soon(kill_mid_chat)
    assert len(bobs) >= 2, "the relay was killed after bob's last post"
    assert bobs[0].closed == dave_listener.closed == 1006

    # Every post made after bob rejoined is answered: wait for each last one's echo.
    last = {alice.client_id: stayers[0], carol.client_id: stayers[1], bob.client_id: bobs[-1]}
    for client_id, listener in last.items():
        await listener.wait_for(relayed_to(sent[client_id][-1]))

    # The dead relay's members are gone within the heartbeat bound; bob is there once.
    def dave_left(listener: Listener) -> bool:
        return any(e["clientId"] == dave.client_id for e in listener.events("left"))

    for listener in stayers:
        await listener.wait_for(dave_left, PRESENCE_BOUND)
    fresh = await connect(nursery, relays[0], room)
    history_envelope, connected = await fresh.hello(token)
    history = history_envelope["messages"]
    expected = [alice.client_id, bob.client_id, carol.client_id, fresh.client_id]
    assert sorted(connected["participants"]) == sorted(expected)

    # One order: strictly increasing ids, no duplicates, each sender's posts in order.
    assert ids(history) == sorted(set(ids(history)))
    assert len({m["ciphertext"] for m in history}) == len(history)
    for peer in (alice, carol):
        assert by(peer, history) == texts(sent[peer.client_id])
    bob_sent = texts(sent[bob.client_id])
    kept = by(bob, history)
    assert kept == [c for c in bob_sent if c in set(kept)]  # lost only what no one saw
    # Who stayed saw exactly the history; whoever saw a message sees it there.
    for listener in stayers:
        assert listener.messages == history
    assert dave_listener.messages == history[: len(dave_listener.messages)]
    assert bobs[0].messages == history[: len(bobs[0].messages)]
    for earlier, listener in zip(bob_histories, bobs[1:], strict=True):
        joined = earlier + listener.messages  # what history gave, then what came live
        start = history.index(joined[0]) if joined else 0
        assert joined == history[start : start + len(joined)]  # no gap, no duplicate
    acknowledged = [m for listener in bobs for m in listener.messages if m["from"] == bob.client_id]
    assert all(m in history for m in acknowledged)

    # The verifier: refused on every relay, the killed one restarted included.
    await trio.to_thread.run_sync(killable.restart_relays, 1)
    await assert_token_refused_everywhere(nursery, list(relays), room)
    back = await connect(nursery, relays[1], room)
    again, _ = await back.hello(token)
    assert again["messages"] == history
    killable.assert_running()


# ----- 3. Valkey killed, then restarted on its AOF ----------------------------------------


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Deployment]:
    """Two relays of their own: a relay just back from an outage may still say 1013 once."""
    with running_deployment(tmp_path, 2) as deployment:
        yield deployment


async def next_error(peer: Peer) -> dict[str, Any]:
    """Read until an error arrives (within WAIT each); no message may be relayed first."""
    while (frame := await peer.receive())["type"] != "error":
        assert frame["type"] != "message", frame
    return frame


@dataclass
class Member:
    """A client that, closed with 1012 (its relay resynchronises), rejoins the same relay.

    As docs/protocol.md asks of clients; ``histories`` are what each rejoin was given.
    """

    nursery: trio.Nursery
    relay: Urls
    room: str
    token: str
    listener: Listener
    histories: list[list[dict[str, Any]]] = field(default_factory=list)

    async def current(self) -> Listener:
        if self.listener.ended:
            assert self.listener.closed == 1012, self.listener.closed
            peer, history, _ = await rejoin(self.nursery, [self.relay], self.room, self.token,
                                            self.listener.peer.client_id)  # fmt: skip
            self.histories.append(history["messages"])
            self.listener = Listener(peer).start(self.nursery)
        return self.listener

    def stored(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """``message`` as the last rejoin's history has it, if it does."""
        history = self.histories[-1] if self.histories else []
        return next((m for m in history if m["ciphertext"] == message["ciphertext"]), None)

    async def post_until_relayed(self) -> dict[str, Any]:
        """Post until a post is relayed; ``unavailable`` means: try again a little later."""
        with trio.fail_after(VALKEY_BACK_SECONDS):
            while True:
                listener = await self.current()
                before = len(listener.frames)
                message = fake_message()
                with contextlib.suppress(ConnectionClosed):
                    await listener.peer.send(message)
                await listener.wait_for(answer_or_end(before))
                if (answer := answered(listener.frames[before:])) is None:
                    await self.current()  # closed before answering: was it stored?
                    if (kept := self.stored(message)) is not None:
                        return kept
                    continue
                if answer["type"] == "message":
                    assert answer["ciphertext"] == message["ciphertext"], answer
                    return answer
                assert answer["code"] == "unavailable", answer
                await trio.sleep(RETRY_SECONDS)

    async def wait_relayed(self, message: dict[str, Any]) -> None:
        """Wait until ``message`` reached this client, live or in the history of a rejoin."""
        with trio.fail_after(VALKEY_BACK_SECONDS):
            while message not in (await self.current()).messages:
                if self.stored(message) == message:
                    return
                await self.listener.wait_for(lambda lr: lr.ended or message in lr.messages)


def answered(frames: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first answer to a post among ``frames``: its echo or an error."""
    return next((f for f in frames if f["type"] in ("message", "error")), None)


def answer_or_end(start: int) -> Callable[[Listener], bool]:
    """Whether a post's answer has come since frame ``start``, or the connection ended."""
    return lambda listener: listener.ended or answered(listener.frames[start:]) is not None


async def test_what_was_echoed_outlives_valkey_killed_and_restarted_on_its_aof(
    nursery: trio.Nursery, pair: Deployment
) -> None:
    room, token = new_room_id(), new_token()
    alice = await joined_peer(nursery, pair.relays[0], room, token)
    acknowledged = []
    for _ in range(5):
        await alice.post()
        acknowledged.append(await alice.expect("message"))
    pair.kill_valkey()  # no shutdown, no save: only what the AOF was given
    for relay in pair.relays:
        await wait_readiness(relay, 503, UNREADY_SECONDS)
    await trio.to_thread.run_sync(pair.restart_valkey)
    for relay in pair.relays:
        await wait_readiness(relay, 200, VALKEY_BACK_SECONDS)  # reconnected by itself
        # A hello may still be told 1013 (try again later) while the relay resubscribes.
        _, history, _ = await rejoin(nursery, [relay], room, token)
        assert history["messages"] == acknowledged
    await assert_token_refused_everywhere(nursery, list(pair.relays), room)
    pair.assert_running()


async def test_while_valkey_is_down_relays_refuse_clearly_then_chat_again(
    nursery: trio.Nursery, pair: Deployment
) -> None:
    room, token = new_room_id(), new_token()
    r0, r1 = pair.relays
    alice = await joined_peer(nursery, r0, room, token)
    bob = await joined_peer(nursery, r1, room, token)
    await alice.expect("system", event="joined", clientId=bob.client_id)
    acknowledged = []
    for poster in (alice, bob, alice, bob, alice):
        await poster.post()
        echo = await poster.expect("message")
        other = bob if poster is alice else alice
        assert await other.expect("message") == echo
        acknowledged.append(echo)
    assert ids(acknowledged) == [1, 2, 3, 4, 5]

    pair.kill_valkey()
    # While it is down: a post gets an error, never silence; a new hello waits for later.
    for peer in (alice, bob):
        await peer.post()
        error = await next_error(peer)
        assert error["code"] == "unavailable", error
    for relay in pair.relays:
        newcomer = await connect(nursery, relay, room)
        await newcomer.send({"type": "hello", "auth": token})
        assert await newcomer.closed_with() == 1013
        await wait_readiness(relay, 503, UNREADY_SECONDS)
    assert all(relay.running for relay in pair.relays), "a relay exited without Valkey"

    await trio.to_thread.run_sync(pair.restart_valkey)
    for relay in pair.relays:
        await wait_readiness(relay, 200, VALKEY_BACK_SECONDS)
    # Chat again, across both relays, with ids going on: on the same sockets, or on
    # new ones if a relay closed them with 1012 to resynchronise.
    members = [Member(nursery, relay, room, token, Listener(peer).start(nursery))
               for relay, peer in ((r0, alice), (r1, bob))]  # fmt: skip
    relayed_now = await members[0].post_until_relayed()
    assert relayed_now["id"] == 6
    await members[1].wait_relayed(relayed_now)
    _, history, _ = await rejoin(nursery, [r1], room, token)
    assert history["messages"] == [*acknowledged, relayed_now]
    await assert_token_refused_everywhere(nursery, list(pair.relays), room)
    pair.assert_running()


# ----- 4. concurrent posts from three relays -----------------------------------------------

POSTERS: Final = 6  # two members on each relay
POSTS_EACH: Final = 100  # at 50 a second each: 300 a second for about 2 s


async def test_concurrent_posts_from_three_relays_have_one_total_order(
    nursery: trio.Nursery, spread: Deployment
) -> None:
    room, token = new_room_id(), new_token()
    urls = spread.round_robin()
    members = [await joined_peer(nursery, urls, room, token) for _ in range(POSTERS)]
    listeners = [Listener(peer).start(nursery) for peer in members]
    sent: dict[str, list[dict[str, str]]] = {}

    async def post_all(peer: Peer) -> None:
        sent[peer.client_id] = []
        for _ in range(POSTS_EACH):
            sent[peer.client_id].append(await peer.post())
            await trio.sleep(POST_INTERVAL)

    total = POSTERS * POSTS_EACH
    with trio.fail_after(30):
        async with trio.open_nursery() as posting:
            for peer in members:
                posting.start_soon(post_all, peer)
        for listener in listeners:
            await listener.wait_for(lambda lr: len(lr.messages) >= total, 30)
    first = listeners[0].messages
    assert ids(first) == list(range(1, total + 1))  # no gap, no duplicate
    for listener in listeners:
        assert [f for f in listener.frames if f["type"] == "error"] == []
        assert listener.messages == first  # the same sequence for every member
    for peer in members:
        assert by(peer, first) == texts(sent[peer.client_id])
    late = await connect(nursery, spread.relays[2], room)
    history, _ = await late.hello(token)
    assert history["messages"] == first[-10:]
    await assert_token_refused_everywhere(nursery, list(spread.relays), room)


# ----- 5. the verifier on every relay -------------------------------------------------------


async def test_a_wrong_token_is_refused_on_every_relay(
    nursery: trio.Nursery, spread: Deployment
) -> None:
    room, token = new_room_id(), new_token()
    r0, _, r2 = spread.relays
    alice = await joined_peer(nursery, r0, room, token)
    await alice.post()
    echo = await alice.expect("message", id=1)
    await assert_token_refused_everywhere(nursery, list(spread.relays), room)
    bob = await connect(nursery, r2, room)
    history, _ = await bob.hello(token)
    assert history["messages"] == [echo]
