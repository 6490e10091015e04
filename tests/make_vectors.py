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
    }


if __name__ == "__main__":
    path = Path(__file__).with_name("vectors.json")
    path.write_text(json.dumps(build(), indent=2) + "\n", encoding="utf-8")
