"""The reference client reproduces tests/vectors.json, which the browser client checks too."""

import hashlib
import json
from pathlib import Path
from typing import Any, Final

import msgspec
import pytest

from securechat.peer.b64 import b64url_decode, b64url_encode
from securechat.peer.keys import Plaintext, RoomKeys, hkdf
from securechat.peer.link import parse_link
from securechat.protocol import ClientId, RoomId

VECTORS: Final[dict[str, Any]] = json.loads(
    Path(__file__).with_name("vectors.json").read_text(encoding="utf-8")
)


def keys() -> RoomKeys:
    return RoomKeys(b64url_decode(VECTORS["secret"]), RoomId(VECTORS["roomId"]))


def test_link_parses_to_the_secret_and_room() -> None:
    link = parse_link(VECTORS["link"])
    assert link.room_id == VECTORS["roomId"]
    assert b64url_encode(link.secret) == VECTORS["secret"]
    assert link.base == "https://chat.example.org"
    assert str(link) == VECTORS["link"]


def test_message_key_and_access_token() -> None:
    secret = b64url_decode(VECTORS["secret"])
    assert VECTORS["salt"] == "securechat/v1"
    assert hkdf(secret, VECTORS["messageKeyInfo"]).hex() == VECTORS["messageKeyHex"]
    room = keys()
    assert room.access_token.hex() == VECTORS["accessTokenHex"]
    assert room.auth == VECTORS["accessToken"]
    assert room.verifier.hex() == VECTORS["verifierHex"]
    assert hashlib.sha256(room.access_token).hexdigest() == VECTORS["verifierHex"]


def test_plaintext_encodes_byte_for_byte() -> None:
    message = VECTORS["message"]
    plaintext = msgspec.json.decode(message["plaintext"], type=Plaintext)
    assert msgspec.json.encode(plaintext).decode() == message["plaintext"]


def test_seal_gives_the_expected_ciphertext() -> None:
    message = VECTORS["message"]
    room = keys()
    sender = ClientId(message["clientId"])
    assert room.additional_data(sender).decode() == message["additionalData"]
    plaintext = msgspec.json.decode(message["plaintext"], type=Plaintext)
    sealed = room.seal(plaintext, sender, iv=bytes.fromhex(message["ivHex"]))
    assert sealed.iv == message["iv"]
    assert sealed.ciphertext == message["ciphertext"]


def test_open_recovers_the_plaintext() -> None:
    message = VECTORS["message"]
    opened = keys().open(message["iv"], message["ciphertext"], ClientId(message["clientId"]))
    assert opened == Plaintext(
        text="hello, world", mid="AAECAwQFBgcICQoL", ts=1764000000000, name="Alice"
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("clientId", "mallory"),  # the additional data names someone else
        ("iv", b64url_encode(bytes(12))),
        ("ciphertext", "AAAA"),
        ("ciphertext", "not base64url!"),
        ("iv", "short"),
    ],
)
def test_anything_altered_does_not_open(field: str, value: str) -> None:
    message = dict(VECTORS["message"]) | {field: value}
    assert keys().open(message["iv"], message["ciphertext"], ClientId(message["clientId"])) is None


def test_another_room_cannot_open_it() -> None:
    message = VECTORS["message"]
    other = RoomKeys(b64url_decode(VECTORS["secret"]), RoomId("another-room"))
    assert other.open(message["iv"], message["ciphertext"], ClientId(message["clientId"])) is None
