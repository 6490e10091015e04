"""Room keys and message sealing: HKDF-SHA256 and AES-256-GCM, as docs/protocol.md says.

From the link's 32-byte secret and the room id, HKDF-SHA256 with salt
``securechat/v1`` derives two independent 32-byte values:

- the message key (info ``message-key:<roomId>``), which never leaves the client;
- the access token (info ``room-access:<roomId>``), sent in ``hello``; the server
  keeps only its SHA-256 (the verifier).

A message is AES-GCM with a fresh random 12-byte IV and additional data
``securechat/v1|<roomId>|<sender clientId>`` over the UTF-8 JSON plaintext
``{"text", "mid", "ts", "name"?}``. The additional data binds a ciphertext to its
room and its sender: the server cannot replay it into another room or relay it as
someone else's without the receiver's decryption failing.

A signal (relayed, never stored: a profile, or a note that someone is typing) is
sealed the same way, with ``|signal`` appended to the additional data, so that
the server can never make a signal open as a message, or a message as a signal.
"""

import hashlib
import os
from dataclasses import dataclass
from typing import Final, TypeVar, final

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from securechat.peer.b64 import b64url_decode, b64url_encode
from securechat.peer.bounds import MAX_NAME_CHARS
from securechat.protocol import ClientId, RoomId

SALT: Final = b"securechat/v1"
KEY_BYTES: Final = 32  # AES-256 key and access token sizes
IV_BYTES: Final = 12  # AES-GCM's standard nonce size
MID_BYTES: Final = 12  # random bytes in a message id: collisions are not a concern
MAX_TEXT_UTF16: Final = 4000  # a message's text, in UTF-16 code units as browsers count


class Plaintext(msgspec.Struct, frozen=True, omit_defaults=True):
    """The decrypted body of a message. Unknown fields are ignored when decoding.

    Field order is the wire order: ``text``, ``mid``, ``ts``, then ``name`` if set.
    """

    text: str
    mid: str
    ts: int
    name: str | None = None


class SignalBody(msgspec.Struct, frozen=True, omit_defaults=True):
    """The decrypted body of a signal. Unknown fields are ignored when decoding.

    ``kind`` is ``profile`` (with ``name``, absent for no name) or ``typing``;
    receivers ignore kinds they do not know.
    """

    kind: str
    name: str | None = None


PROFILE: Final = "profile"
TYPING: Final = "typing"

_plaintext_decoder: Final[msgspec.json.Decoder[Plaintext]] = msgspec.json.Decoder(Plaintext)
_signal_decoder: Final[msgspec.json.Decoder[SignalBody]] = msgspec.json.Decoder(SignalBody)
_encoder: Final = msgspec.json.Encoder()
Body = TypeVar("Body", Plaintext, SignalBody)


def utf16_length(text: str) -> int:
    """Length of ``text`` in UTF-16 code units, the unit of a browser's ``length``."""
    return len(text.encode("utf-16-le")) // 2


def new_mid() -> str:
    """A fresh message id: base64url of 12 random bytes."""
    return b64url_encode(os.urandom(MID_BYTES))


def check_outgoing(text: str, name: str | None) -> None:
    """Refuse what other clients would not accept from us.

    Error handling: raises ``ValueError`` with a one-line reason.
    """
    if not text.strip():
        raise ValueError("an empty message is not sent")
    if utf16_length(text) > MAX_TEXT_UTF16:
        raise ValueError(f"the message is longer than {MAX_TEXT_UTF16} characters")
    if name is not None and len(name) > MAX_NAME_CHARS:
        raise ValueError(f"the name is longer than {MAX_NAME_CHARS} characters")


@final
@dataclass(frozen=True, slots=True)
class Sealed:
    """A message as it goes on the wire: base64url IV and ciphertext."""

    iv: str
    ciphertext: str


@final
class RoomKeys:
    """The keys of one room. Holds key material: never logged, never stored."""

    __slots__ = ("_aead", "access_token", "room_id")

    def __init__(self, secret: bytes, room_id: RoomId) -> None:
        if len(secret) != KEY_BYTES:
            raise ValueError(f"the room secret must be {KEY_BYTES} bytes")
        self.room_id: Final = room_id
        self._aead: Final = AESGCM(hkdf(secret, f"message-key:{room_id}"))
        self.access_token: Final = hkdf(secret, f"room-access:{room_id}")

    def __repr__(self) -> str:
        return f"RoomKeys(room_id={self.room_id!r}, keys=<hidden>)"

    @property
    def auth(self) -> str:
        """The access token as ``hello`` carries it (base64url)."""
        return b64url_encode(self.access_token)

    @property
    def verifier(self) -> bytes:
        """What the server stores for this room: SHA-256 of the access token."""
        return hashlib.sha256(self.access_token).digest()

    def additional_data(self, sender: ClientId) -> bytes:
        return f"securechat/v1|{self.room_id}|{sender}".encode()

    def signal_data(self, sender: ClientId) -> bytes:
        """A signal's additional data: a message's, with ``|signal`` appended."""
        return self.additional_data(sender) + b"|signal"

    def seal(self, plaintext: Plaintext, sender: ClientId, iv: bytes | None = None) -> Sealed:
        """Encrypt ``plaintext`` as sent by ``sender``, with a fresh random IV.

        ``iv`` is for test vectors only: reusing an IV under one key breaks AES-GCM.
        """
        return self._seal(plaintext, self.additional_data(sender), iv)

    def seal_signal(self, body: SignalBody, sender: ClientId, iv: bytes | None = None) -> Sealed:
        """Encrypt a signal as sent by ``sender``; ``iv`` as for ``seal``."""
        return self._seal(body, self.signal_data(sender), iv)

    def open(self, iv: str, ciphertext: str, sender: ClientId) -> Plaintext | None:
        """Decrypt a relayed message from ``sender``; None if it does not open.

        Error handling: never raises on peer input. A wrong key, a tampered or
        misattributed ciphertext, a bad IV, or a body that is not the plaintext
        JSON all give None, which the caller shows as an unreadable message.
        """
        return self._open(iv, ciphertext, self.additional_data(sender), _plaintext_decoder)

    def open_signal(self, iv: str, ciphertext: str, sender: ClientId) -> SignalBody | None:
        """Decrypt a relayed signal from ``sender``; None if it does not open.

        Error handling: as ``open``; the caller drops a signal that gives None.
        """
        return self._open(iv, ciphertext, self.signal_data(sender), _signal_decoder)

    def _seal(self, body: Plaintext | SignalBody, aad: bytes, iv: bytes | None) -> Sealed:
        iv = os.urandom(IV_BYTES) if iv is None else iv
        ciphertext = self._aead.encrypt(iv, _encoder.encode(body), aad)
        return Sealed(b64url_encode(iv), b64url_encode(ciphertext))

    def _open(
        self, iv: str, ciphertext: str, aad: bytes, decoder: msgspec.json.Decoder[Body]
    ) -> Body | None:
        try:
            raw_iv = b64url_decode(iv)
            if len(raw_iv) != IV_BYTES:
                return None
            return decoder.decode(self._aead.decrypt(raw_iv, b64url_decode(ciphertext), aad))
        except (ValueError, InvalidTag, msgspec.DecodeError):
            # msgspec.ValidationError is a DecodeError; a malformed tag, IV or
            # base64url is a ValueError.
            return None


def hkdf(secret: bytes, info: str) -> bytes:
    """HKDF-SHA256 with the protocol's salt: 32 bytes for ``info``."""
    kdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=SALT, info=info.encode())
    return kdf.derive(secret)
