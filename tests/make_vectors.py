"""Writes tests/vectors.json: the protocol's test vectors (``python -m tests.make_vectors``).

The inputs are fixed, so the output never changes; both clients' tests check it.
"""

import base64
import hashlib
import json
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SALT = b"securechat/v1"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def hkdf(secret: bytes, info: str) -> bytes:
    kdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=SALT, info=info.encode("utf-8"))
    return kdf.derive(secret)


def first_proof(challenge: bytes, bits: int) -> dict[str, object]:
    """The first 8-byte little-endian counter whose SHA-256(challenge || nonce) holds."""
    counter = 0
    while True:
        nonce = counter.to_bytes(8, "little")
        digest = hashlib.sha256(challenge + nonce).digest()
        if int.from_bytes(digest, "big") >> (256 - bits) == 0:
            nonce_text, hex_digest = b64url(nonce), digest.hex()
            return {"bits": bits, "counter": counter, "nonce": nonce_text, "digestHex": hex_digest}
        counter += 1


def build() -> dict[str, object]:
    secret = bytes(range(32))
    room_id = b64url(bytes(range(0xA0, 0xB0)))
    message_key = hkdf(secret, f"message-key:{room_id}")
    token = hkdf(secret, f"room-access:{room_id}")
    iv = bytes(range(0xC0, 0xCC))
    client_id = "alice01"
    plaintext = '{"text":"hello, world","mid":"AAECAwQFBgcICQoL","ts":1764000000000,"name":"Alice"}'
    aad = f"securechat/v1|{room_id}|{client_id}"
    ciphertext = AESGCM(message_key).encrypt(iv, plaintext.encode("utf-8"), aad.encode("utf-8"))
    signal_iv = bytes(range(0xD0, 0xDC))
    signal_plaintext = '{"kind":"profile","name":"Alice"}'
    signal_aad = f"{aad}|signal"
    signal_ciphertext = AESGCM(message_key).encrypt(
        signal_iv, signal_plaintext.encode("utf-8"), signal_aad.encode("utf-8")
    )
    challenge = bytes(range(0x10, 0x20))
    return {
        "secret": b64url(secret),
        "roomId": room_id,
        "link": f"https://chat.example.org/room/{room_id}#{b64url(secret)}",
        "salt": SALT.decode("ascii"),
        "messageKeyInfo": f"message-key:{room_id}",
        "messageKeyHex": message_key.hex(),
        "accessTokenInfo": f"room-access:{room_id}",
        "accessTokenHex": token.hex(),
        "accessToken": b64url(token),
        "verifierHex": hashlib.sha256(token).hexdigest(),
        "message": {
            "clientId": client_id,
            "ivHex": iv.hex(),
            "iv": b64url(iv),
            "additionalData": aad,
            "plaintext": plaintext,
            "ciphertext": b64url(ciphertext),
        },
        "signal": {
            "clientId": client_id,
            "ivHex": signal_iv.hex(),
            "iv": b64url(signal_iv),
            "additionalData": signal_aad,
            "plaintext": signal_plaintext,
            "ciphertext": b64url(signal_ciphertext),
        },
        "proof": {
            "challengeHex": challenge.hex(),
            "challenge": b64url(challenge),
            "found": [first_proof(challenge, bits) for bits in (0, 6, 8, 12, 16, 20)],
        },
    }


if __name__ == "__main__":
    path = Path(__file__).with_name("vectors.json")
    path.write_text(json.dumps(build(), indent=2) + "\n", encoding="utf-8")
