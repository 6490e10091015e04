"""A shared room's events in order, over members with scripted sockets (sans-IO).

The same rules against real relays and a real redis-server: tests/test_shared_room.py.
"""

import json

from securechat.frames import text_payload
from securechat.member import Member
from securechat.outbox import Outbox
from securechat.protocol import ClientId
from securechat.valkey.events import EVENTS_QUEUED, RoomEvents
from tests.test_outbox import Socket


def member(name: str) -> tuple[Member, Socket]:
    socket = Socket()
    return Member(ClientId(name), Outbox(64, socket)), socket


def received(socket: Socket) -> list[dict[str, object]]:
    """The envelopes on the wire, in order (each frame a whole unmasked text frame)."""
    out, wire = [], socket.wire
    while wire:
        size, start = wire[1], 2
        if size == 126:
            size, start = int.from_bytes(wire[2:4], "big"), 4
        out.append(json.loads(text_payload(wire[: start + size])))
        wire = wire[start + size :]
    return out


def message(ev: int, ident: int) -> tuple[int, bytes, bytes]:
    return ev, b"m", b'{"type":"message","id":%d}' % ident


def test_events_go_out_in_order_and_a_joiner_gets_only_later_ones() -> None:
    alice, alice_wire = member("alice")
    bob, bob_wire = member("bobby")
    events = RoomEvents()
    members = {alice: "p/1/alice"}
    events.joined(alice, 1)
    events.add(*message(2, 1))
    events.add(3, b"j", b"p/2/bobby\n1\nalice,bobby")  # bob's join: his reply had it
    events.add(*message(4, 2))
    members[bob] = "p/2/bobby"
    events.joined(bob, 3)
    assert events.deliver(members)
    assert [e.get("id") for e in received(alice_wire)] == [1, None, 2]
    assert received(alice_wire)[1] == {
        "type": "system", "event": "joined", "clientId": "bobby",
        "participants": ["alice", "bobby"],
    }  # fmt: skip
    assert [e["id"] for e in received(bob_wire)] == [2]


def test_a_gap_or_an_overflow_says_events_were_missed() -> None:
    alice, _ = member("alice")
    events = RoomEvents()
    events.joined(alice, 5)
    events.add(*message(7, 1))  # 6 never came
    assert not events.deliver({alice: "p/1/alice"})
    events.joined(alice, 9)  # it starts afresh at the next join
    for ev in range(10, 11 + EVENTS_QUEUED):
        events.add(*message(ev, ev))
    assert not events.deliver({alice: "p/1/alice"})


def test_a_signal_skips_its_sender_and_also_connected_reaches_only_its_client() -> None:
    alice, alice_wire = member("alice")
    other_tab, other_wire = member("alice")
    bob, bob_wire = member("bobby")
    members = {alice: "p/1/alice", other_tab: "p/2/alice", bob: "q/1/bobby"}
    events = RoomEvents()
    events.joined(alice, 1)
    events.add(2, b"s", b'p/1/alice\n{"type":"signal","from":"alice"}')
    events.add(3, b"j", b"q/9/alice\n0\nalice,bobby")  # a third tab, on another relay
    assert events.deliver(members)
    assert [e["type"] for e in received(alice_wire)] == ["system"]
    assert [e["type"] for e in received(other_wire)] == ["signal", "system"]
    assert [e["type"] for e in received(bob_wire)] == ["signal"]
    assert received(other_wire)[1]["event"] == "also_connected"
