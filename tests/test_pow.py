"""The proof of work: the server's check, the Python client's solver, the wire shapes.

The vectors (tests/vectors.json, made by tests/make_vectors.py) are checked here
by both Python sides, and in Chromium by tests/test_browser_pow.py.
"""

import hashlib
import json
from pathlib import Path
from typing import Any, Final

import msgspec
import pytest

from securechat import pow as server_pow
from securechat.errors import ErrorCode
from securechat.peer import pow as client_pow
from securechat.peer.b64 import b64url_decode, b64url_encode
from securechat.peer.conversation import Conversation
from securechat.peer.events import Challenged, ServerError
from securechat.peer.keys import RoomKeys
from securechat.protocol import (
    Challenge,
    ClientId,
    FrameError,
    Hello,
    RoomId,
    decode_frame,
    encode,
)

VECTORS: Final[dict[str, Any]] = json.loads(
    Path(__file__).with_name("vectors.json").read_text(encoding="utf-8")
)["proof"]
CHALLENGE: Final = bytes.fromhex(VECTORS["challengeHex"])
AUTH: Final = b64url_encode(bytes(32))


@pytest.mark.parametrize("found", VECTORS["found"], ids=lambda f: f"{f['bits']}-bits")
def test_vectors_hold_on_both_sides(found: dict[str, Any]) -> None:
    nonce = b64url_decode(found["nonce"])
    assert nonce == found["counter"].to_bytes(8, "little")
    assert hashlib.sha256(CHALLENGE + nonce).hexdigest() == found["digestHex"]
    assert server_pow.proof_holds(CHALLENGE, nonce, found["bits"])
    assert client_pow.proof_holds(CHALLENGE, nonce, found["bits"])
    # The counter is the first that holds: the solver finds exactly it.
    assert client_pow.solve_some(CHALLENGE, found["bits"], 0, found["counter"] + 1) == nonce
    assert client_pow.solve_some(CHALLENGE, found["bits"], 0, found["counter"]) is None


def test_one_bit_more_does_not_hold() -> None:
    found = VECTORS["found"][-1]
    nonce = b64url_decode(found["nonce"])
    zeros = server_pow.leading_zero_bits(bytes.fromhex(found["digestHex"]))
    assert zeros >= found["bits"]
    assert not server_pow.proof_holds(CHALLENGE, nonce, zeros + 1)
    assert not server_pow.proof_holds(bytes(16), nonce, found["bits"])  # another challenge


@pytest.mark.parametrize(
    ("digest", "bits"),
    [(b"\xff" + bytes(31), 0), (b"\x7f", 1), (b"\x00\x01", 15), (b"\0\0", 16), (bytes(32), 256)],
)
def test_leading_zero_bits(digest: bytes, bits: int) -> None:
    assert server_pow.leading_zero_bits(digest) == bits
    assert client_pow.leading_zero_bits(digest) == bits


def test_nonce_length_is_bounded() -> None:
    assert not server_pow.proof_holds(CHALLENGE, b"", 0)
    assert not server_pow.proof_holds(CHALLENGE, bytes(17), 0)
    assert server_pow.proof_holds(CHALLENGE, bytes(16), 0)
    assert len(server_pow.new_challenge()) == server_pow.CHALLENGE_BYTES == 16


def test_hello_with_and_without_proof_decodes() -> None:
    assert decode_frame(json.dumps({"type": "hello", "auth": AUTH}), 100) == Hello(auth=AUTH)
    frame = json.dumps({"type": "hello", "auth": AUTH, "proof": "pwAAAAAAAAA"})
    assert decode_frame(frame, 100) == Hello(auth=AUTH, proof="pwAAAAAAAAA")


@pytest.mark.parametrize(
    "proof",
    [None, "", b64url_encode(bytes(17)), "pwAAAAAAAAB", "pwAAAAAAAAA=", 5],
    ids=["null", "empty", "17-bytes", "not-canonical", "padded", "number"],
)
def test_a_malformed_proof_is_a_bad_envelope(proof: object) -> None:
    frame = json.dumps({"type": "hello", "auth": AUTH, "proof": proof})
    result = decode_frame(frame, 100)
    assert isinstance(result, FrameError)
    assert result.code is ErrorCode.BAD_ENVELOPE


def test_challenge_envelope_shape() -> None:
    text = encode(Challenge(challenge="EBESExQVFhcYGRobHB0eHw", bits=12))
    assert msgspec.json.decode(text) == {
        "type": "challenge",
        "challenge": "EBESExQVFhcYGRobHB0eHw",
        "bits": 12,
    }


def conversation() -> Conversation:
    return Conversation(RoomKeys(bytes(32), RoomId("room")), ClientId("alice01"))


def test_the_client_turns_a_challenge_into_work_and_a_second_hello() -> None:
    chat = conversation()
    events = chat.receive(encode(Challenge(challenge=VECTORS["challenge"], bits=8)))
    assert events == [Challenged(CHALLENGE, 8)]
    hello = msgspec.json.decode(chat.hello(bytes.fromhex("a700000000000000")))
    assert hello == {"type": "hello", "auth": chat.keys.auth, "proof": "pwAAAAAAAAA"}
    assert "proof" not in msgspec.json.decode(chat.hello())


@pytest.mark.parametrize(
    ("challenge", "bits"), [("EBESExQVFhcYGRobHB0eHw", 33), ("not base64url!", 8), ("", 8)]
)
def test_the_client_refuses_a_challenge_it_should_not_solve(challenge: str, bits: int) -> None:
    events = conversation().receive(encode(Challenge(challenge=challenge, bits=bits)))
    assert len(events) == 1
    assert isinstance(events[0], ServerError)
    assert events[0].code == "bad_challenge"
