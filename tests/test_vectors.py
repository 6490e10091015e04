"""The reference client reproduces tests/vectors.json, which the browser client checks too."""

import hashlib
import json
from pathlib import Path
from typing import Any, Final

import msgspec
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from securechat.peer.b64 import b64url_decode, b64url_encode
from securechat.peer.keys import Plaintext, RoomKeys, SignalBody, hkdf
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


def test_the_signal_vector_is_aes_gcm_under_the_message_key_with_its_own_data() -> None:
    signal = VECTORS["signal"]
    assert signal["additionalData"] == VECTORS["message"]["additionalData"] + "|signal"
    aead = AESGCM(bytes.fromhex(VECTORS["messageKeyHex"]))
    sealed = aead.encrypt(
        bytes.fromhex(signal["ivHex"]),
        signal["plaintext"].encode("utf-8"),
        signal["additionalData"].encode("utf-8"),
    )
    assert b64url_encode(sealed) == signal["ciphertext"]
    assert b64url_encode(bytes.fromhex(signal["ivHex"])) == signal["iv"]


def test_seal_signal_gives_the_expected_ciphertext_and_opens_again() -> None:
    signal = VECTORS["signal"]
    room, sender = keys(), ClientId(signal["clientId"])
    assert room.signal_data(sender).decode() == signal["additionalData"]
    body = msgspec.json.decode(signal["plaintext"], type=SignalBody)
    assert body == SignalBody(kind="profile", name="Alice")
    assert msgspec.json.encode(body).decode() == signal["plaintext"]
    sealed = room.seal_signal(body, sender, iv=bytes.fromhex(signal["ivHex"]))
    assert (sealed.iv, sealed.ciphertext) == (signal["iv"], signal["ciphertext"])
    assert room.open_signal(signal["iv"], signal["ciphertext"], sender) == body
    assert room.open_signal(signal["iv"], signal["ciphertext"], ClientId("mallory")) is None


def test_a_signal_never_opens_as_a_message_nor_a_message_as_a_signal() -> None:
    signal, message = VECTORS["signal"], VECTORS["message"]
    room, sender = keys(), ClientId("alice01")
    assert room.open(signal["iv"], signal["ciphertext"], sender) is None
    assert room.open_signal(message["iv"], message["ciphertext"], sender) is None
