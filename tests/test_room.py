"""The room actor over raw memory channels: no sockets, no sleeps, Trio's clock."""

from collections.abc import Sequence
from typing import Any

import msgspec
import trio
import trio.testing

from securechat.actor import Room
from securechat.errors import CloseCode
from securechat.frames import text_frame, text_payload
from securechat.limits import (
    ACTIVE_MARK_SECONDS,
    CLEAR_COOLDOWN_SECONDS,
    OUTBOX_FRAMES,
    OUTBOX_HIGH_WATER,
    PAUSE_TAIL_SECONDS,
    ROOM_GRACE_SECONDS,
    STALL_BUDGET_SECONDS,
    STALL_SECONDS,
    STALL_WINDOW_SECONDS,
    STALLED_CLIENTS,
    STALLED_MEMORY_SECONDS,
)
from securechat.member import Member
from securechat.memory import MemoryStorage
from securechat.outbox import Outbox
from securechat.protocol import ClientId, RoomId
from securechat.ratelimit import TimeInWindow
from securechat.room import (
    ROOM_BUSY,
    SLOW_DOWN,
    ClearRequest,
    Command,
    Join,
    Leave,
    Outcome,
    Post,
    RoomRules,
    RoomSettings,
    Signal,
)
from securechat.storage import (
    Append,
    Clear,
    Confirm,
    Quota,
    RoomRecord,
    SetVerifier,
    Storage,
    Touch,
    Write,
    stored_bytes,
)

ROOM = RoomId("room")
VERIFIER = b"v" * 32
SETTINGS = RoomSettings(history_cap=3, max_participants=3)
IV = "AAAAAAAAAAAAAAAA"
BUSY = {"type": "error", "code": "rate_limited", "message": "room busy: frame dropped"}
SLOW = {"type": "error", "code": "rate_limited", "message": "slow down: frame dropped"}
STALL_MS = int(STALL_SECONDS * 1000)
BUDGET_MS = int(STALL_BUDGET_SECONDS * 1000)
WINDOW_MS = STALL_WINDOW_SECONDS * 1000


class Probe:
    """A member and its outbox, which has no socket: every frame waits there."""

    def __init__(self, client_id: str, outbox_size: int = 16) -> None:
        self.outbox = Outbox(outbox_size)
        self.member = Member(ClientId(client_id), self.outbox)

    def frames(self) -> list[dict[str, Any]]:
        """Read everything queued, as the connection's writer would."""
        out: list[dict[str, Any]] = []
        while (frame := self.outbox.take_nowait()) is not None:
            out.append(msgspec.json.decode(text_payload(frame)))
        return out

    def fall_behind(self) -> None:
        """Leave frames unread up to the high-water mark, as a reader that stopped would."""
        while self.member.backlog < OUTBOX_HIGH_WATER:
            self.member.deliver_nowait(text_frame('{"type": "unread"}'))


class GatedStorage:
    """Memory storage that holds every write until the test opens the gate."""

    def __init__(self) -> None:
        self._inner = MemoryStorage()
        self.gate = trio.Event()
        self.quota = self._inner.quota
        self.load_meta = self._inner.load_meta
        self.load = self._inner.load
        self.load_history = self._inner.load_history
        self.sweep = self._inner.sweep
        self.close = self._inner.close

    async def write(self, room_id: RoomId, writes: Sequence[Write], now_ms: int) -> None:
        await self.gate.wait()
        await self._inner.write(room_id, writes, now_ms)


async def start_room(
    nursery: trio.Nursery, storage: Storage | None = None
) -> tuple[trio.MemorySendChannel[Command], list[bool]]:
    send, receive = trio.open_memory_channel[Command](64)
    stopped: list[bool] = []
    room = Room(ROOM, receive, storage or MemoryStorage(), SETTINGS, lambda: stopped.append(True))
    nursery.start_soon(room.run)
    return send, stopped


async def test_join_gets_history_then_connected(nursery: trio.Nursery) -> None:
    inbox, _ = await start_room(nursery)
    alice, bob = Probe("alice"), Probe("bobby")
    await inbox.send(Join(alice.member, VERIFIER))
    await inbox.send(Join(bob.member, VERIFIER))
    await trio.testing.wait_all_tasks_blocked()
    assert alice.frames() == [
        {"type": "history", "cap": 3, "messages": []},
        {"type": "system", "event": "connected", "clientId": "alice", "participants": ["alice"]},
        {
            "type": "system",
            "event": "joined",
            "clientId": "bobby",
            "participants": ["alice", "bobby"],
        },
    ]
    assert [f["type"] for f in bob.frames()] == ["history", "system"]


async def test_wrong_verifier_is_refused_before_capacity(nursery: trio.Nursery) -> None:
    inbox, _ = await start_room(nursery)
    probes = [Probe(f"user{i}") for i in range(3)]
    for probe in probes:
        await inbox.send(Join(probe.member, VERIFIER))
    wrong, late = Probe("wrong"), Probe("later")
    await inbox.send(Join(wrong.member, b"x" * 32))
    await inbox.send(Join(late.member, VERIFIER))
    await trio.testing.wait_all_tasks_blocked()
    assert wrong.member.close_code is CloseCode.BAD_TOKEN
    assert late.member.close_code is CloseCode.ROOM_FULL
    assert wrong.frames() == []
    assert late.frames() == []


async def test_history_cap_and_ids(nursery: trio.Nursery) -> None:
    storage = MemoryStorage()
    inbox, _ = await start_room(nursery, storage)
    alice = Probe("alice", outbox_size=64)
    await inbox.send(Join(alice.member, VERIFIER))
    for i in range(5):
        await inbox.send(Post(alice.member, "AAAAAAAAAAAAAAAA", f"c{i}"))
    await trio.testing.wait_all_tasks_blocked()
    messages = [f for f in alice.frames() if f["type"] == "message"]
    assert [m["id"] for m in messages] == [1, 2, 3, 4, 5]
    record = await storage.load(ROOM)
    assert [m.id for m in await storage.load_history(ROOM)] == [3, 4, 5]
    assert record.last_id == 5
    late = Probe("later")
    await inbox.send(Join(late.member, VERIFIER))
    await trio.testing.wait_all_tasks_blocked()
    history = late.frames()[0]
    assert history["type"] == "history"
    assert [m["ciphertext"] for m in history["messages"]] == ["c2", "c3", "c4"]


async def test_nothing_is_relayed_before_it_is_stored(nursery: trio.Nursery) -> None:
    storage = GatedStorage()
    inbox, _ = await start_room(nursery, storage)
    alice = Probe("alice")
    await inbox.send(Join(alice.member, VERIFIER))
    await inbox.send(Post(alice.member, "AAAAAAAAAAAAAAAA", "c0"))
    await trio.testing.wait_all_tasks_blocked()
    assert alice.frames() == []  # not even the join: it registers the verifier
    storage.gate.set()
    await trio.testing.wait_all_tasks_blocked()
    assert [f["type"] for f in alice.frames()] == ["history", "system", "message"]


async def test_one_connection_of_two_leaving_is_not_a_leave(nursery: trio.Nursery) -> None:
    inbox, _ = await start_room(nursery)
    alice, tab1, tab2 = Probe("alice"), Probe("bobby"), Probe("bobby")
    for probe in (alice, tab1, tab2):
        await inbox.send(Join(probe.member, VERIFIER))
    await inbox.send(Leave(tab1.member))
    await trio.testing.wait_all_tasks_blocked()
    assert [f.get("event") for f in alice.frames()] == [None, "connected", "joined"]
    await inbox.send(Leave(tab2.member))
    await trio.testing.wait_all_tasks_blocked()
    assert alice.frames() == [
        {"type": "system", "event": "left", "clientId": "bobby", "participants": ["alice"]}
    ]


async def test_clear(nursery: trio.Nursery) -> None:
    storage = MemoryStorage()
    inbox, _ = await start_room(nursery, storage)
    alice = Probe("alice")
    await inbox.send(Join(alice.member, VERIFIER))
    await inbox.send(Post(alice.member, "AAAAAAAAAAAAAAAA", "c0"))
    await inbox.send(ClearRequest(alice.member))
    await trio.testing.wait_all_tasks_blocked()
    assert [f["type"] for f in alice.frames()][-2:] == ["history_cleared", "system"]
    assert await storage.load_history(ROOM) == []


async def test_a_full_outbox_evicts_without_blocking(nursery: trio.Nursery) -> None:
    inbox, _ = await start_room(nursery)
    fast, stuck = Probe("quick", outbox_size=64), Probe("stuck", outbox_size=2)
    await inbox.send(Join(fast.member, VERIFIER))
    await inbox.send(Join(stuck.member, VERIFIER))
    for i in range(5):
        await inbox.send(Post(fast.member, "AAAAAAAAAAAAAAAA", f"c{i}"))
    await trio.testing.wait_all_tasks_blocked()
    assert stuck.member.close_code is CloseCode.TOO_SLOW
    assert len([f for f in fast.frames() if f["type"] == "message"]) == 5


async def test_a_congested_member_pauses_posts_until_it_catches_up(nursery: trio.Nursery) -> None:
    storage = MemoryStorage()
    inbox, _ = await start_room(nursery, storage)
    alice, bob = Probe("alice", OUTBOX_FRAMES), Probe("bobby", OUTBOX_FRAMES)
    await inbox.send(Join(alice.member, VERIFIER))
    await inbox.send(Join(bob.member, VERIFIER))
    await trio.testing.wait_all_tasks_blocked()
    alice.frames()
    bob.fall_behind()
    for i in range(3):
        await inbox.send(Post(alice.member, IV, f"c{i}"))
    await trio.testing.wait_all_tasks_blocked()
    # Only the sender hears of it; nothing is stored or relayed, and nobody is closed.
    assert alice.frames() == [BUSY] * 3
    assert bob.member.backlog == OUTBOX_HIGH_WATER
    assert (await storage.load(ROOM)).last_id == 0
    assert alice.member.close_code is None
    assert bob.member.close_code is None
    # Once bob has read what was waiting, posts flow again.
    bob.frames()
    await inbox.send(Post(alice.member, IV, "again"))
    await trio.testing.wait_all_tasks_blocked()
    for probe in (alice, bob):
        assert [(f["id"], f["ciphertext"]) for f in probe.frames()] == [(1, "again")]
    assert (await storage.load(ROOM)).last_id == 1


EMPTY_HISTORY = '{"type":"history","cap":3,"messages":[]}'  # what the actor would have read


def apply(rules: RoomRules, command: Command, now_ms: int) -> Outcome:
    out = Outcome()
    rules.apply(command, now_ms, out)
    out.carry_out(EMPTY_HISTORY)
    return out


def room_of(*names: str, settings: RoomSettings = SETTINGS) -> tuple[RoomRules, list[Probe]]:
    """The rules of a room these members have joined, with what joining sent them read."""
    rules = RoomRules(RoomRecord(), settings)
    probes = [Probe(name, OUTBOX_FRAMES) for name in names]
    for probe in probes:
        apply(rules, Join(probe.member, VERIFIER), 0)
    for probe in probes:
        probe.frames()
    return rules, probes


def test_a_member_congested_past_the_stall_limit_is_closed_and_the_room_goes_on() -> None:
    rules, everyone = room_of("alice", "bobby", "stuck")
    alice, bob, stuck = everyone
    stuck.fall_behind()
    stall_ms = int(STALL_SECONDS * 1000)
    # Congested since the first post it held up; up to the limit it only slows the room.
    for now in (1_000, 1_000 + stall_ms // 2, 1_000 + stall_ms):
        assert not apply(rules, Post(alice.member, IV, "c"), now).writes
        assert alice.frames() == [BUSY]
    assert [probe.member.close_code for probe in everyone] == [None, None, None]
    # Past it, the member is closed as too slow, leaves at once, and the post goes through.
    out = apply(rules, Post(alice.member, IV, "c"), 1_001 + stall_ms)
    assert [type(write) for write in out.writes] == [Append]
    assert [probe.member.close_code for probe in everyone] == [None, None, CloseCode.TOO_SLOW]
    for probe in (alice, bob):
        left, message = probe.frames()
        assert left == {
            "type": "system",
            "event": "left",
            "clientId": "stuck",
            "participants": ["alice", "bobby"],
        }
        assert message["id"] == 1
    assert stuck.frames() == [{"type": "unread"}] * OUTBOX_HIGH_WATER
    apply(rules, Leave(stuck.member), 2_000 + stall_ms)  # its connection's goodbye: no news
    assert alice.frames() == []


def test_a_member_that_keeps_reading_is_never_stalled() -> None:
    rules, (alice, slow) = room_of("alice", "slowy")
    slow.fall_behind()
    apply(rules, Post(alice.member, IV, "c"), 0)
    slow.outbox.take_nowait()  # it reads one frame: below high water for a moment
    apply(rules, Post(alice.member, IV, "c"), 1)  # relayed, filling it up again
    assert apply(rules, Post(alice.member, IV, "c"), int(STALL_SECONDS * 1000) + 1).writes == []
    assert slow.member.close_code is None  # congested for 1 ms of it, not the whole time
    assert [f["type"] for f in alice.frames()] == ["error", "message", "error"]


def test_a_sender_that_stopped_reading_is_closed_and_its_post_dropped() -> None:
    rules, (alice, stuck) = room_of("alice", "stuck")
    stuck.fall_behind()
    apply(rules, Post(stuck.member, IV, "c"), 0)
    out = apply(rules, Post(stuck.member, IV, "c"), int(STALL_SECONDS * 1000) + 1)
    assert out.writes == []
    assert stuck.member.close_code is CloseCode.TOO_SLOW
    assert [f.get("event") for f in alice.frames()] == ["left"]


def test_one_batch_never_overfills_an_outbox() -> None:
    rules, (alice, bob) = room_of("alice", "bobby")
    # A burst from both, handled in one batch: the frames this batch will deliver
    # count as queued, so relaying stops at the high-water mark, not at eviction.
    out = Outcome()
    for i in range(40):
        rules.apply(Post((alice, bob)[i % 2].member, IV, f"c{i}"), 0, out)
    out.carry_out(EMPTY_HISTORY)
    assert len(out.writes) == OUTBOX_HIGH_WATER
    for probe in (alice, bob):
        assert probe.member.close_code is None
        frames = probe.frames()
        assert [f["id"] for f in frames if f["type"] == "message"] == list(
            range(1, OUTBOX_HIGH_WATER + 1)
        )
        assert frames.count(BUSY) == (40 - OUTBOX_HIGH_WATER) // 2


def test_answers_never_make_a_member_congested() -> None:
    rules, (alice, mute) = room_of("alice", "muted")
    # A connection that never reads but keeps sending fills its outbox with its own
    # refusals: they take space, but only what the room relays can pause the room.
    answers = OUTBOX_HIGH_WATER + 8
    for i in range(answers):
        mute.member.deliver_nowait((ROOM_BUSY, SLOW_DOWN)[i % 2])
    assert mute.member.backlog == 0
    for now in range(OUTBOX_FRAMES - answers):
        out = apply(rules, Post(alice.member, IV, "c"), now)
        assert [type(write) for write in out.writes] == [Append]
    assert mute.member.backlog == OUTBOX_FRAMES - answers
    # Its outbox is full: the next frame closes it, and nothing was ever held up.
    assert [mute.member.close_code] == [None]
    assert apply(rules, Post(alice.member, IV, "c"), 100).writes
    assert mute.member.close_code is CloseCode.TOO_SLOW
    assert [f["type"] for f in alice.frames()] == ["message"] * (OUTBOX_FRAMES - answers + 1)


def test_a_reader_reads_its_answers_too() -> None:
    rules, (alice, bob) = room_of("alice", "bobby")
    bob.fall_behind()
    for now in range(3):
        apply(rules, Post(alice.member, IV, "c"), now)
    assert alice.frames() == [BUSY] * 3
    assert alice.member.backlog == 0  # read, and the count of answers with them


def stall(rules: RoomRules, alice: Probe, stuck: Probe, start: int, step: int = 500) -> int:
    """Alice posts every ``step`` ms while ``stuck`` is behind; return when it was closed."""
    stuck.fall_behind()
    now = start
    while stuck.member.close_code is None:
        apply(rules, Post(alice.member, IV, "c"), now)
        now += step
        assert now - start < 10 * STALL_MS, "never closed"
    alice.frames()
    return now - step - start


def test_the_room_holds_posts_for_at_most_its_budget_then_closes_at_once() -> None:
    rules, (alice,) = room_of("alice")
    # One member stalls: the room waits for it the full stall limit.
    first = Probe("stuck0", OUTBOX_FRAMES)
    apply(rules, Join(first.member, VERIFIER), 0)
    assert stall(rules, alice, first, 0) > STALL_MS
    assert rules.paused_ms(STALL_MS + 1000) > BUDGET_MS - 1000
    # Within the same window, others (new sockets, new clientIds) get no grace at all:
    # the first post that finds one behind closes it, and goes through.
    for i in range(1, 5):
        other = Probe(f"stuck{i}", OUTBOX_FRAMES)
        now = STALL_MS + i * 8_000
        apply(rules, Join(other.member, VERIFIER), now)
        assert stall(rules, alice, other, now) == 0
        assert alice.frames() == []
    assert [f["id"] for f in alice.frames()] == []
    # A window after the first pause, the budget is back: a newcomer gets the grace.
    late = Probe("stuck9", OUTBOX_FRAMES)
    now = STALL_MS + WINDOW_MS + 2_000
    apply(rules, Join(late.member, VERIFIER), now)
    assert stall(rules, alice, late, now) > STALL_MS


def test_a_client_id_that_stalled_gets_no_grace_when_it_comes_back() -> None:
    rules, (alice,) = room_of("alice")
    first = Probe("stuck", OUTBOX_FRAMES)
    apply(rules, Join(first.member, VERIFIER), 0)
    assert stall(rules, alice, first, 0) > STALL_MS
    # Long after the room's budget is back, the same clientId is closed at once.
    for now in (2 * WINDOW_MS, int(STALLED_MEMORY_SECONDS * 1000) - 1000):
        again = Probe("stuck", OUTBOX_FRAMES)
        apply(rules, Join(again.member, VERIFIER), now)
        assert stall(rules, alice, again, now) == 0
    # Then it is forgiven.
    now = int(STALLED_MEMORY_SECONDS * 1000) * 3
    forgiven = Probe("stuck", OUTBOX_FRAMES)
    apply(rules, Join(forgiven.member, VERIFIER), now)
    assert stall(rules, alice, forgiven, now) > STALL_MS


def test_the_room_remembers_a_bounded_number_of_stallers() -> None:
    rules = RoomRules(
        RoomRecord(),
        RoomSettings(history_cap=3, max_participants=STALLED_CLIENTS + 10),
    )
    alice = Probe("alice", OUTBOX_FRAMES)
    apply(rules, Join(alice.member, VERIFIER), 0)
    first = Probe("first", OUTBOX_FRAMES)
    apply(rules, Join(first.member, VERIFIER), 0)
    assert stall(rules, alice, first, 0) > STALL_MS
    now = STALL_MS + 1000
    names = [f"user{i:03}" for i in range(STALLED_CLIENTS)]
    for name in names:  # each closed at once (the budget is spent), each remembered
        probe = Probe(name, OUTBOX_FRAMES)
        apply(rules, Join(probe.member, VERIFIER), now)
        assert stall(rules, alice, probe, now) == 0
    now += WINDOW_MS + 2_000  # the budget is back; only the memory of clientIds is left
    newest = Probe(names[-1], OUTBOX_FRAMES)
    apply(rules, Join(newest.member, VERIFIER), now)
    assert stall(rules, alice, newest, now) == 0
    forgotten = Probe("first", OUTBOX_FRAMES)
    apply(rules, Join(forgotten.member, VERIFIER), now)
    assert stall(rules, alice, forgotten, now) > STALL_MS


def test_a_pause_nobody_waits_through_counts_only_its_tail() -> None:
    rules, (alice, slow) = room_of("alice", "slowy")
    slow.fall_behind()
    apply(rules, Post(alice.member, IV, "c"), 0)
    slow.frames()  # it catches up; nobody posts for a while
    assert apply(rules, Post(alice.member, IV, "c"), 30_000).writes
    tail_ms = int(PAUSE_TAIL_SECONDS * 1000)
    assert tail_ms <= rules.paused_ms(30_000) <= tail_ms + 1000
    # Refused posts keep the pause open; the one taken ends it.
    slow.fall_behind()
    for now in range(31_000, 35_000, 1_000):
        apply(rules, Post(alice.member, IV, "c"), now)
    slow.frames()
    apply(rules, Post(alice.member, IV, "c"), 35_500)
    assert tail_ms + 4_500 <= rules.paused_ms(35_500) <= tail_ms + 5_500
    assert rules.paused_ms(35_500 + WINDOW_MS + 1000) == 0


def test_time_in_window() -> None:
    window = TimeInWindow(60)
    window.add(500, 2_500)
    assert window.total(2_500) == 2_000
    window.add(59_000, 61_000)
    # Whole seconds, the one ``now`` is in and the 60 before: at 61 s, second 0 is out.
    assert window.total(61_000) == 1_500 + 2_000
    assert window.total(62_000) == 500 + 2_000
    window.add(70_000, 400_000)  # a long span keeps only what fits in the window
    assert window.total(400_000) == 60_000
    assert window.total(1_000_000) == 0


def test_one_clear_per_room_per_cooldown_whoever_asks() -> None:
    rules, (alice, bob) = room_of("alice", "bobby")
    cooldown_ms = int(CLEAR_COOLDOWN_SECONDS * 1000)
    assert [type(w) for w in apply(rules, ClearRequest(alice.member), 1_000).writes] == [Clear]
    bob.frames()
    alice.frames()
    for who, now in ((bob, 1_001), (alice, 2_000), (bob, cooldown_ms + 999)):
        assert apply(rules, ClearRequest(who.member), now).writes == []
        assert who.frames() == [SLOW]
    assert alice.frames() == []
    assert apply(rules, ClearRequest(bob.member), cooldown_ms + 1_000).writes == [Clear()]
    assert [f["type"] for f in alice.frames()] == ["history_cleared", "system"]


# ----- signals and a clientId's other connections ----------------------------------


def test_a_signal_goes_to_every_other_connection_and_is_never_stored() -> None:
    rules, (alice, tab1, tab2) = room_of("alice", "bobby", "bobby")
    out = apply(rules, Signal(tab1.member, IV, "s0"), 1_000)
    assert out.writes == []
    assert rules.last_id == 0
    relayed = {"type": "signal", "from": "bobby", "iv": IV, "ciphertext": "s0"}
    # The same clientId's other tab gets it; the sending connection does not.
    for probe in (alice, tab2):
        assert probe.frames() == [relayed]
    assert tab1.frames() == []
    # Encoded once: every recipient gets the very same text.
    ((recipients, text),) = out.deliveries
    assert recipients == (alice.member, tab2.member)
    assert isinstance(text, str)
    # Alone in the room, a signal goes nowhere and is no error either.
    lonely, (solo,) = room_of("alone")
    assert apply(lonely, Signal(solo.member, IV, "s1"), 1_000).deliveries == []
    assert solo.frames() == []


def test_a_congested_room_drops_a_signal_without_a_word() -> None:
    rules, (alice, bob, carol) = room_of("alice", "bobby", "carol")
    bob.fall_behind()
    out = apply(rules, Signal(alice.member, IV, "s0"), 1_000)
    assert out.deliveries == []
    assert alice.frames() == []
    assert carol.frames() == []
    assert bob.member.backlog == OUTBOX_HIGH_WATER
    assert [p.member.close_code for p in (alice, bob, carol)] == [None, None, None]
    # Dropped signals hold no post back: the room's pause budget is untouched.
    assert rules.paused_ms(2_000) == 0
    bob.frames()
    apply(rules, Signal(alice.member, IV, "s1"), 2_000)
    assert [f["ciphertext"] for f in carol.frames()] == ["s1"]
    assert [f["ciphertext"] for f in bob.frames()] == ["s1"]


def test_signals_count_towards_the_outbox_like_relayed_messages() -> None:
    rules, (alice, bob) = room_of("alice", "bobby")
    out = Outcome()
    for _ in range(OUTBOX_HIGH_WATER + 5):
        rules.apply(Signal(alice.member, IV, "s"), 1_000, out)
    out.carry_out(EMPTY_HISTORY)
    # Once bob's outbox would reach high water, the rest of the batch is dropped.
    assert len(bob.frames()) == OUTBOX_HIGH_WATER


def test_also_connected_goes_only_to_the_client_ids_existing_connections() -> None:
    roomy = RoomSettings(history_cap=3, max_participants=5)
    rules, (alice, tab1) = room_of("alice", "bobby", settings=roomy)
    tab2 = Probe("bobby", OUTBOX_FRAMES)
    apply(rules, Join(tab2.member, VERIFIER), 1_000)
    assert tab1.frames() == [
        {
            "type": "system",
            "event": "also_connected",
            "clientId": "bobby",
            "participants": ["alice", "bobby"],
        }
    ]
    assert alice.frames() == []  # no "joined" either: bobby was here already
    assert [f.get("event") for f in tab2.frames()] == [None, "connected"]
    # A third tab: both earlier ones hear of it, still nobody else.
    tab3 = Probe("bobby", OUTBOX_FRAMES)
    apply(rules, Join(tab3.member, VERIFIER), 2_000)
    for probe in (tab1, tab2):
        assert [f["event"] for f in probe.frames()] == ["also_connected"]
    assert alice.frames() == []
    assert [f.get("event") for f in tab3.frames()] == [None, "connected"]
    # A first connection of a clientId is a "joined", never an "also_connected".
    carol = Probe("carol", OUTBOX_FRAMES)
    apply(rules, Join(carol.member, VERIFIER), 3_000)
    for probe in (alice, tab1, tab2, tab3):
        assert [f["event"] for f in probe.frames()] == ["joined"]


async def test_a_later_joiner_gets_no_signal_in_its_history(nursery: trio.Nursery) -> None:
    storage = MemoryStorage()
    inbox, _ = await start_room(nursery, storage)
    alice, bob = Probe("alice"), Probe("bobby")
    await inbox.send(Join(alice.member, VERIFIER))
    await inbox.send(Join(bob.member, VERIFIER))
    await inbox.send(Post(alice.member, IV, "c0"))
    await inbox.send(Signal(alice.member, IV, "s0"))
    await trio.testing.wait_all_tasks_blocked()
    assert [f["type"] for f in bob.frames()][-2:] == ["message", "signal"]
    assert [m.ciphertext for m in await storage.load_history(ROOM)] == ["c0"]
    late = Probe("later")
    await inbox.send(Join(late.member, VERIFIER))
    await trio.testing.wait_all_tasks_blocked()
    history, connected = late.frames()
    assert history["cap"] == SETTINGS.history_cap
    assert [m["ciphertext"] for m in history["messages"]] == ["c0"]
    assert connected["event"] == "connected"


async def test_commands_from_non_members_are_ignored(nursery: trio.Nursery) -> None:
    inbox, _ = await start_room(nursery)
    alice, ghost = Probe("alice"), Probe("ghost")
    await inbox.send(Join(alice.member, VERIFIER))
    await inbox.send(Post(ghost.member, "AAAAAAAAAAAAAAAA", "c0"))
    await inbox.send(ClearRequest(ghost.member))
    await inbox.send(Signal(ghost.member, IV, "s0"))
    await inbox.send(Leave(ghost.member))
    await trio.testing.wait_all_tasks_blocked()
    assert [f["type"] for f in alice.frames()] == ["history", "system"]


async def test_an_empty_room_stops_after_the_grace_period(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    inbox, stopped = await start_room(nursery)
    alice = Probe("alice")
    await inbox.send(Join(alice.member, VERIFIER))
    await inbox.send(Leave(alice.member))
    await trio.sleep(ROOM_GRACE_SECONDS / 2)
    assert stopped == []
    await trio.sleep(ROOM_GRACE_SECONDS)
    assert stopped == [True]
    # Its inbox is closed: a late sender learns at once and starts a new room.
    try:
        inbox.send_nowait(Join(alice.member, VERIFIER))
    except trio.BrokenResourceError:
        pass
    else:
        raise AssertionError("the stopped room still accepted a command")


async def test_a_room_with_members_does_not_stop(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    inbox, stopped = await start_room(nursery)
    await inbox.send(Join(Probe("alice").member, VERIFIER))
    await trio.sleep(ROOM_GRACE_SECONDS * 10)
    assert stopped == []


class BrokenStorage:
    """Storage whose disk has gone away."""

    def __init__(self) -> None:
        inner = MemoryStorage()
        self.quota = inner.quota
        self.load_meta = inner.load_meta
        self.load_history = inner.load_history
        self.write = inner.write
        self.sweep = inner.sweep
        self.close = inner.close

    async def load(self, room_id: RoomId) -> RoomRecord:
        await trio.lowlevel.checkpoint()
        raise OSError("disk I/O error")


async def test_a_failing_room_closes_members_and_queued_joins() -> None:
    send, receive = trio.open_memory_channel[Command](64)
    room = Room(ROOM, receive, BrokenStorage(), SETTINGS, lambda: None)
    waiting = Probe("alice")
    send.send_nowait(Join(waiting.member, VERIFIER))
    try:
        await room.run()
    except OSError:
        pass
    else:
        raise AssertionError("the failure was swallowed")
    assert waiting.member.close_code is CloseCode.INTERNAL


# ----- history from storage, the quota, the lifecycle -----------------------------


async def test_a_joiner_gets_exactly_the_committed_history_then_every_later_message(
    nursery: trio.Nursery,
) -> None:
    storage = MemoryStorage()
    send, receive = trio.open_memory_channel[Command](64)
    alice, bob, carol = Probe("alice", 64), Probe("bobby", 64), Probe("carol", 64)
    # One burst, all queued before the room runs: joins between posts in one inbox.
    send.send_nowait(Join(alice.member, VERIFIER))
    for i in range(2):
        send.send_nowait(Post(alice.member, IV, f"c{i}"))
    send.send_nowait(Join(bob.member, VERIFIER))
    send.send_nowait(Join(carol.member, VERIFIER))
    for i in range(2, 4):
        send.send_nowait(Post(alice.member, IV, f"c{i}"))
    nursery.start_soon(Room(ROOM, receive, storage, SETTINGS, lambda: None).run)
    await trio.testing.wait_all_tasks_blocked()
    for probe in (bob, carol):
        frames = probe.frames()
        assert [m["id"] for m in frames[0]["messages"]] == [1, 2]
        assert [f["id"] for f in frames if f["type"] == "message"] == [3, 4]
    assert [f["id"] for f in alice.frames() if f["type"] == "message"] == [1, 2, 3, 4]


def quota_room(max_bytes: int, *sizes: int) -> tuple[RoomRules, Probe]:
    """A room of one member whose history holds messages of these ciphertext lengths."""
    quota = Quota(max_bytes=max_bytes, max_rooms=10)
    rules = RoomRules(RoomRecord(), RoomSettings(history_cap=3, max_participants=3), quota)
    alice = Probe("alice", OUTBOX_FRAMES)
    apply(rules, Join(alice.member, VERIFIER), 0)
    for size in sizes:
        out = apply(rules, Post(alice.member, IV, "c" * size), 0)
        quota.stored_bytes += out.grown  # what storage counts on commit
    alice.frames()
    return rules, alice


def test_at_the_quota_a_post_is_stored_only_if_its_room_pays_for_it() -> None:
    per = stored_bytes(ClientId("alice"), IV, "")  # a message's bytes beyond its ciphertext
    rules, alice = quota_room(per * 3 + 300, 100, 100)
    # 300 bytes of ciphertext stored; a 150-byte message would go over: the oldest pays.
    out = apply(rules, Post(alice.member, IV, "c" * 150), 0)
    assert [(type(w), getattr(w, "keep", None)) for w in out.writes] == [(Append, 2)]
    assert out.grown == 50
    assert list(rules.ledger.sizes) == [per + 100, per + 150]
    # A message larger than all the room holds is refused, to the sender only.
    out = apply(rules, Post(alice.member, IV, "c" * 2_000), 0)
    assert out.writes == []
    assert alice.frames()[-1] == {
        "type": "error",
        "code": "rate_limited",
        "message": "server storage full: frame dropped",
    }
    assert rules.last_id == 3  # no id spent on it


def test_below_the_quota_the_history_cap_alone_decides() -> None:
    rules, alice = quota_room(10**9, 10, 10, 10)
    out = apply(rules, Post(alice.member, IV, "c" * 5_000), 0)
    assert [getattr(w, "keep", None) for w in out.writes] == [3]
    assert out.grown == 4_990


def test_a_second_client_id_confirms_the_room_and_joins_mark_it_at_most_every_interval() -> None:
    rules = RoomRules(RoomRecord(), RoomSettings(history_cap=3, max_participants=10))
    probes = [Probe(name) for name in ("alice", "alice", "bobby", "carol", "carol")]
    alice, alice2, bob, carol, carol2 = (p.member for p in probes)
    reclaimable = [rules.reclaimable]  # an empty room: its slot costs nothing to take
    assert [type(w) for w in apply(rules, Join(alice, VERIFIER), 0).writes] == [SetVerifier]
    reclaimable.append(rules.reclaimable)  # only its creator
    assert apply(rules, Join(alice2, VERIFIER), 1).writes == []  # the creator again
    assert [type(w) for w in apply(rules, Join(bob, VERIFIER), 2).writes] == [Confirm]
    reclaimable.append(rules.reclaimable)
    assert reclaimable == [True, True, False]
    interval = int(ACTIVE_MARK_SECONDS * 1000)
    assert apply(rules, Join(carol, VERIFIER), interval).writes == []  # marked at 2 ms
    assert [type(w) for w in apply(rules, Join(carol2, VERIFIER), interval + 2).writes] == [Touch]


def test_the_first_join_of_a_tombstone_revives_it() -> None:
    record = RoomRecord(verifier=VERIFIER, last_id=7, last_active=0, confirmed=True, swept=True)
    rules = RoomRules(record, SETTINGS)
    stranger, owner = Probe("wrong"), Probe("alice")
    assert apply(rules, Join(stranger.member, b"x" * 32), 1).writes == []
    assert stranger.member.close_code is CloseCode.BAD_TOKEN
    assert [type(w) for w in apply(rules, Join(owner.member, VERIFIER), 1).writes] == [Touch]


async def test_close_nowait_closes_members_and_queued_joins(nursery: trio.Nursery) -> None:
    send, receive = trio.open_memory_channel[Command](64)
    room = Room(ROOM, receive, MemoryStorage(), SETTINGS, lambda: None)
    done = trio.Event()

    async def run() -> None:
        await room.run()
        done.set()

    nursery.start_soon(run)
    member, queued = Probe("alice"), Probe("bobby")
    await send.send(Join(member.member, VERIFIER))
    await trio.testing.wait_all_tasks_blocked()
    assert room.reclaimable
    send.send_nowait(Join(queued.member, VERIFIER))
    room.close_nowait(CloseCode.TOO_MANY_ROOMS)
    await done.wait()
    assert member.member.close_code is CloseCode.TOO_MANY_ROOMS
    assert queued.member.close_code is CloseCode.TOO_MANY_ROOMS
    try:
        send.send_nowait(Join(Probe("later").member, VERIFIER))
    except trio.BrokenResourceError:
        pass
    else:
        raise AssertionError("the closed room still accepted a command")
