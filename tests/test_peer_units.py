"""The reference client's rules without a socket: links, identity files, display, dedupe."""

import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from securechat.peer.b64 import b64url_decode, b64url_encode
from securechat.peer.conversation import Conversation
from securechat.peer.display import People, clean, json_line, line
from securechat.peer.events import (
    ChatMessage,
    Cleared,
    Presence,
    Profile,
    ServerError,
    Unreadable,
)
from securechat.peer.keys import MAX_TEXT_UTF16, Plaintext, RoomKeys, SignalBody, hkdf
from securechat.peer.link import InviteLink, LinkError, new_link, parse_link
from securechat.peer.state import load_identity, state_dir
from securechat.protocol import ClientId, RoomId

SECRET = bytes(range(32))
ROOM = RoomId("oKGio6SlpqeoqaqrrK2urw")
ALICE, BOB = ClientId("alice01"), ClientId("bob0002")


# ----- links ---------------------------------------------------------------------------


def test_new_link_round_trips_and_keeps_the_secret_out_of_repr() -> None:
    link = new_link("https://chat.example.org/")
    assert parse_link(str(link)) == link
    assert len(b64url_decode(link.room_id)) == 16
    assert len(link.secret) == 32
    assert b64url_encode(link.secret) not in repr(link)
    assert link.ws_url(ALICE) == f"wss://chat.example.org/ws/{link.room_id}?client=alice01"


def test_link_behind_a_path_prefix() -> None:
    link = parse_link(f"http://host:8080/chat/room/{ROOM}#{b64url_encode(SECRET)}")
    assert link.base == "http://host:8080/chat"
    assert link.ws_url(BOB) == f"ws://host:8080/chat/ws/{ROOM}?client=bob0002"


@pytest.mark.parametrize(
    "text",
    [
        f"https://x.org/room/{ROOM}",  # no secret
        f"https://x.org/room/{ROOM}#",
        f"https://x.org/rooms/{ROOM}#{b64url_encode(SECRET)}",
        f"https://x.org/room/bad.id#{b64url_encode(SECRET)}",
        f"https://x.org/room/{ROOM}#{b64url_encode(SECRET[:31])}",  # short
        f"https://x.org/room/{ROOM}#{b64url_encode(SECRET)}=",  # padding
        f"https://x.org/room/{ROOM}#{b64url_encode(SECRET)[:-1]}B",  # non-canonical tail
        f"ftp://x.org/room/{ROOM}#{b64url_encode(SECRET)}",
        f"/room/{ROOM}#{b64url_encode(SECRET)}",
    ],
)
def test_bad_links_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(LinkError) as info:
        parse_link(text)
    assert "\n" not in str(info.value)


# ----- identity file -------------------------------------------------------------------


def test_identity_is_remembered_per_room_without_the_secret(tmp_path: Path) -> None:
    first, warning = load_identity(ROOM, directory=tmp_path)
    assert warning is None
    again, _ = load_identity(ROOM, directory=tmp_path)
    assert again == first
    other, _ = load_identity(RoomId("another"), directory=tmp_path)
    assert other.client_id != first.client_id

    named, _ = load_identity(ROOM, name="Alice", directory=tmp_path)
    assert named.name == "Alice"
    assert load_identity(ROOM, directory=tmp_path)[0].name == "Alice"

    forced, _ = load_identity(ROOM, client_id=ClientId("forced1"), directory=tmp_path)
    assert forced.client_id == "forced1"
    assert load_identity(ROOM, directory=tmp_path)[0].client_id == first.client_id  # not stored

    path = tmp_path / "rooms" / f"{ROOM}.json"
    saved = json.loads(path.read_text())
    assert saved == {"roomId": ROOM, "clientId": first.client_id, "name": "Alice"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_corrupt_identity_file_is_replaced_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "rooms" / f"{ROOM}.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    identity, warning = load_identity(ROOM, directory=tmp_path)
    assert warning is not None
    assert identity.room_id == ROOM


def test_state_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert state_dir() == tmp_path / "securechat"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/dir")
    assert state_dir() == Path.home() / ".local" / "state" / "securechat"


# ----- the conversation rules ------------------------------------------------------------


def relayed(
    keys: RoomKeys, sender: ClientId, plaintext: Plaintext, message_id: int
) -> dict[str, object]:
    sealed = keys.seal(plaintext, sender)
    return {
        "type": "message",
        "id": message_id,
        "from": sender,
        "sentAt": 1_764_000_000_000 + message_id,
        "iv": sealed.iv,
        "ciphertext": sealed.ciphertext,
    }


def frame(envelope: Mapping[str, object]) -> str:
    return json.dumps(envelope)


def test_history_is_ordered_by_id_and_deduped_by_mid() -> None:
    keys = RoomKeys(SECRET, ROOM)
    bob = Conversation(keys, BOB, clock=lambda: 5)
    one = Plaintext(text="one", mid="m1", ts=1)
    two = Plaintext(text="two", mid="m2", ts=2, name="Alice")
    history = {
        "type": "history",
        "cap": 10,
        "messages": [relayed(keys, ALICE, two, 2), relayed(keys, ALICE, one, 1)],
    }
    events = bob.receive(frame(history))
    assert [(e.id, e.text, e.name) for e in events if isinstance(e, ChatMessage)] == [
        (1, "one", None),
        (2, "two", "Alice"),
    ]
    # The same message relayed again (a replay, or a resend after a lost echo).
    assert bob.receive(frame(relayed(keys, ALICE, two, 3))) == []
    assert bob.receive(frame(relayed(keys, ALICE, one, 1))) == []


def test_a_message_that_does_not_open_is_unreadable_not_fatal() -> None:
    keys = RoomKeys(SECRET, ROOM)
    bob = Conversation(keys, BOB)
    forged = relayed(keys, ALICE, Plaintext(text="x", mid="m", ts=1), 7) | {"from": "mallory"}
    assert bob.receive(frame(forged)) == [
        Unreadable(7, ClientId("mallory"), 1_764_000_000_007, False)
    ]
    wrong_key = relayed(RoomKeys(bytes(32), ROOM), ALICE, Plaintext(text="x", mid="n", ts=1), 8)
    assert isinstance(bob.receive(frame(wrong_key))[0], Unreadable)
    assert bob.receive("not a frame at all") == []
    assert bob.receive(frame({"type": "surprise"})) == []


def test_unknown_plaintext_fields_are_ignored() -> None:
    keys = RoomKeys(SECRET, ROOM)
    body = b'{"text":"hi","mid":"q","ts":3,"name":"A","future":[1,2]}'
    iv = os.urandom(12)
    ciphertext = AESGCM(hkdf(SECRET, f"message-key:{ROOM}")).encrypt(
        iv, body, keys.additional_data(ALICE)
    )
    envelope = {
        "type": "message", "id": 1, "from": ALICE, "sentAt": 1,
        "iv": b64url_encode(iv), "ciphertext": b64url_encode(ciphertext),
    }  # fmt: skip
    [event] = Conversation(keys, BOB).receive(frame(envelope))
    assert isinstance(event, ChatMessage)
    assert (event.text, event.name) == ("hi", "A")


def test_own_messages_stay_pending_until_echoed() -> None:
    keys = RoomKeys(SECRET, ROOM)
    alice = Conversation(keys, ALICE, name="Alice")
    mid, first = alice.compose("hello")
    assert alice.pending == 1
    [again] = alice.resend_frames()
    sent, resent = json.loads(first), json.loads(again)
    assert sent["iv"] != resent["iv"]  # a fresh IV every time
    echo = {"type": "message", "id": 1, "from": ALICE, "sentAt": 9} | {
        k: sent[k] for k in ("iv", "ciphertext")
    }
    [event] = alice.receive(frame(echo))
    assert isinstance(event, ChatMessage)
    assert (event.own, event.mid, event.name) == (True, mid, "Alice")
    assert alice.pending == 0
    assert alice.resend_frames() == []


def test_outgoing_limits() -> None:
    alice = Conversation(RoomKeys(SECRET, ROOM), ALICE)
    alice.compose("😀" * (MAX_TEXT_UTF16 // 2))  # 2 UTF-16 units each: exactly the limit
    with pytest.raises(ValueError, match="longer"):
        alice.compose("😀" * (MAX_TEXT_UTF16 // 2) + "x")
    with pytest.raises(ValueError, match="empty"):
        alice.compose("  ")
    with pytest.raises(ValueError, match="name"):
        Conversation(RoomKeys(SECRET, ROOM), ALICE, name="n" * 41)


def test_system_events_and_errors() -> None:
    bob = Conversation(RoomKeys(SECRET, ROOM), BOB)
    connected = {"type": "system", "event": "connected", "clientId": BOB, "participants": [BOB]}
    assert bob.receive(frame(connected)) == [Presence("connected", BOB, (BOB,))]
    joined = connected | {"event": "joined", "clientId": ALICE, "participants": [BOB, ALICE]}
    assert bob.receive(frame(joined)) == [Presence("joined", ALICE, (BOB, ALICE))]
    assert bob.participants == (BOB, ALICE)
    assert bob.receive(frame({"type": "history_cleared", "by": ALICE})) == [Cleared(ALICE)]
    assert bob.receive(frame(joined | {"event": "cleared"})) == []
    error = {"type": "error", "code": "rate_limited", "message": "slow down"}
    assert bob.receive(frame(error)) == [ServerError("rate_limited", "slow down")]


def signal(keys: RoomKeys, sender: ClientId, body: SignalBody) -> dict[str, object]:
    sealed = keys.seal_signal(body, sender)
    return {"type": "signal", "from": sender, "iv": sealed.iv, "ciphertext": sealed.ciphertext}


def test_a_profile_signal_names_its_sender_and_other_signals_are_dropped() -> None:
    keys = RoomKeys(SECRET, ROOM)
    bob = Conversation(keys, BOB)
    profile = signal(keys, ALICE, SignalBody(kind="profile", name="Alice"))
    assert bob.receive(frame(profile)) == [Profile(ALICE, "Alice")]
    assert bob.receive(frame(signal(keys, ALICE, SignalBody(kind="profile")))) == [
        Profile(ALICE, None)
    ]
    # Typing, unknown kinds, and whatever does not open say nothing.
    assert bob.receive(frame(signal(keys, ALICE, SignalBody(kind="typing")))) == []
    assert bob.receive(frame(signal(keys, ALICE, SignalBody(kind="dance", name="x")))) == []
    assert bob.receive(frame(profile | {"from": BOB})) == []  # relabelled by the server
    message = relayed(keys, ALICE, Plaintext(text="t", mid="m", ts=1), 1)
    as_signal = {"type": "signal", "from": ALICE, "iv": message["iv"],
                 "ciphertext": message["ciphertext"]}  # fmt: skip
    assert bob.receive(frame(as_signal)) == []  # a message never opens as a signal
    extra = keys.seal_signal(SignalBody(kind="profile", name="Al"), ALICE)
    raw = AESGCM(hkdf(SECRET, f"message-key:{ROOM}")).decrypt(
        b64url_decode(extra.iv), b64url_decode(extra.ciphertext), keys.signal_data(ALICE)
    )
    assert raw == b'{"kind":"profile","name":"Al"}'
    # Unknown fields are ignored.
    sealed = AESGCM(hkdf(SECRET, f"message-key:{ROOM}"))
    iv = os.urandom(12)
    body = b'{"kind":"profile","name":"Ann","avatar":"x"}'
    ciphertext = sealed.encrypt(iv, body, keys.signal_data(ALICE))
    wire = {"type": "signal", "from": ALICE, "iv": b64url_encode(iv),
            "ciphertext": b64url_encode(ciphertext)}  # fmt: skip
    assert bob.receive(frame(wire)) == [Profile(ALICE, "Ann")]


def test_our_profile_frame_is_a_signal_with_our_name_or_none() -> None:
    keys = RoomKeys(SECRET, ROOM)
    for name in ("Alice", None):
        envelope = json.loads(Conversation(keys, ALICE, name=name).profile_frame())
        assert set(envelope) == {"type", "iv", "ciphertext"}
        assert envelope["type"] == "signal"
        opened = keys.open_signal(envelope["iv"], envelope["ciphertext"], ALICE)
        assert opened == SignalBody(kind="profile", name=name)


def test_also_connected_is_one_line_and_profiles_name_people() -> None:
    bob = Conversation(RoomKeys(SECRET, ROOM), BOB)
    also = {"type": "system", "event": "also_connected", "clientId": BOB,
            "participants": [ALICE, BOB]}  # fmt: skip
    (event,) = bob.receive(frame(also))
    assert event == Presence("also_connected", BOB, (ALICE, BOB))
    assert line(event, BOB) == "* your id is also connected elsewhere"

    people = People(BOB)
    people.learn(Profile(ALICE, "Alice\x1b[2J"))
    assert line(Profile(ALICE, "Alice"), BOB, people) is None
    assert line(Presence("left", ALICE, ()), BOB, people) == "* Alice\ufffd[2J (alice01) left"
    nameless = ChatMessage(1, ALICE, 0, "hi", "m", 0, None, False, False)
    shown = line(nameless, BOB, people)
    assert shown is not None
    assert "Alice\ufffd[2J (alice01): hi" in shown
    assert json.loads(json_line(nameless, people.name(ALICE)))["name"] == "Alice\x1b[2J"
    people.learn(Profile(ALICE, None))  # no name any more
    assert people.label(ALICE) == ALICE
    people.learn(Profile(BOB, "Mallory"))  # our own id, from elsewhere: we know our name
    assert people.label(BOB) == f"{BOB} (you)"


# ----- display ---------------------------------------------------------------------------


def test_terminal_controls_are_neutralised() -> None:
    hostile = "hi\x1b]0;owned\x07\x1b[2J\u202eevil\x9b"
    assert "\x1b" not in clean(hostile)
    assert "\u202e" not in clean(hostile)
    assert "\x9b" not in clean(hostile)
    message = ChatMessage(1, ALICE, 0, "a\x1b[31mb\nc", "m", 0, "N\x1bame", False, False)
    shown = line(message, BOB)
    assert shown is not None
    assert "\x1b" not in shown
    assert "\n    c" in shown


def test_json_line_has_the_documented_fields() -> None:
    message = ChatMessage(3, ALICE, 42, "multi\nline é", "m", 0, None, False, True)
    record = json.loads(json_line(message))
    assert record == {"id": 3, "from": ALICE, "sentAt": 42, "name": None, "text": "multi\nline é"}
    assert "\n" not in json_line(message)


def test_plaintext_struct_is_the_wire_shape() -> None:
    plaintext = Plaintext(text="t", mid="m", ts=1)
    assert msgspec.json.encode(plaintext) == b'{"text":"t","mid":"m","ts":1}'
    assert isinstance(new_link(), InviteLink)
