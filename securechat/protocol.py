"""The wire protocol: every envelope as a msgspec Struct, one decoder, one encoder.

Client to server (JSON text frames):

    ===============  ==========================================  ===========================
    type             fields                                      meaning
    ===============  ==========================================  ===========================
    hello            auth (base64url, 32 bytes),                 first frame: the access token
                     proof (base64url, 1..16 bytes, optional)    answers a challenge
    message          iv (base64url, 12 bytes),                   an encrypted chat message
                     ciphertext (base64url, 17 bytes..limit)
    clear_history    -                                           delete the room's history
    signal           iv (base64url, 12 bytes),                   an encrypted ephemeral note
                     ciphertext (base64url, 17..1024 bytes)      (a profile, typing)
    ===============  ==========================================  ===========================

Server to client:

    ===============  ==========================================  ===========================
    challenge        challenge (base64url, 16 bytes), bits       a new room needs a proof
    history          cap, messages (message envelopes, oldest    after a valid hello
                     first)
    system           event, clientId, participants               connected/joined/left/
                                                                 cleared/also_connected
    message          id, from, sentAt, iv, ciphertext            a relayed message
    signal           from, iv, ciphertext                        a relayed signal, not stored
    history_cleared  by                                          someone cleared the history
    error            code, message                               the last frame was dropped
    ===============  ==========================================  ===========================

The server never decrypts anything: ``iv`` and ``ciphertext`` are checked for
shape (canonical base64url, size) and relayed as the exact strings received.
docs/protocol.md is the normative description.
"""

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Annotated, Final, Literal, NewType, final

import msgspec

from securechat.errors import ErrorCode
from securechat.limits import AUTH_TOKEN_BYTES, IV_BYTES, MAX_SIGNAL_BYTES, MIN_CIPHERTEXT
from securechat.pow import MAX_NONCE_BYTES

RoomId = NewType("RoomId", str)
ClientId = NewType("ClientId", str)

_ROOM_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
# ASCII spelled out: with re.IGNORECASE, [a-z] would also match U+0131 (dotless i),
# U+017F (long s) and U+212A (Kelvin sign), whose other case is ASCII, and let
# "al\u0131ce01" in beside "alice01".
_CLIENT_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{4,16}")

# Only the base64url alphabet, no padding: the rest of the checks are in _b64url_len.
# ``\Z``, not ``$``, which also matches before a trailing newline. A value that matches
# holds no ``:``, which is what lets decode_frame count keys cheaply.
Base64Url = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]*\Z")]


def parse_room_id(text: str) -> RoomId | None:
    """Return ``text`` as a RoomId if it has the room id format, else None."""
    return RoomId(text) if _ROOM_ID_RE.fullmatch(text) else None


def parse_client_id(text: str) -> ClientId | None:
    """Return ``text`` as a ClientId (case kept as given) if well-formed, else None."""
    return ClientId(text) if _CLIENT_ID_RE.fullmatch(text) else None


# ----- client to server -------------------------------------------------------------


class Hello(msgspec.Struct, tag="hello", forbid_unknown_fields=True, frozen=True):
    auth: Base64Url
    # Only after a ``challenge``; absent otherwise (``null`` is refused, like any bad type).
    proof: Base64Url | msgspec.UnsetType = msgspec.UNSET


class SendMessage(msgspec.Struct, tag="message", forbid_unknown_fields=True, frozen=True):
    iv: Base64Url
    ciphertext: Base64Url


class ClearHistory(msgspec.Struct, tag="clear_history", forbid_unknown_fields=True, frozen=True):
    pass


class SendSignal(msgspec.Struct, tag="signal", forbid_unknown_fields=True, frozen=True):
    """An ephemeral note for the others in the room: relayed, never stored."""

    iv: Base64Url
    ciphertext: Base64Url


ClientMessage = Hello | SendMessage | ClearHistory | SendSignal

CLIENT_TYPES: Final = frozenset({"hello", "message", "clear_history", "signal"})

_client_decoder: Final[msgspec.json.Decoder[ClientMessage]] = msgspec.json.Decoder(ClientMessage)

# Keys of each envelope, ``type`` included (a hello's ``proof`` adds one): a frame
# with more has a key twice.
_KEYS: Final[dict[type[ClientMessage], int]] = {
    Hello: 2,
    SendMessage: 3,
    ClearHistory: 1,
    SendSignal: 3,
}


@final
@dataclass(frozen=True, slots=True)
class FrameError:
    """Why a frame was refused; becomes an ``error`` envelope and counts as a bad frame."""

    code: ErrorCode
    message: str


def decode_frame(data: str | bytes | None, max_ciphertext: int) -> ClientMessage | FrameError:
    """Decode and validate one WebSocket frame from a client. Never raises.

    Args:
        data: a text frame as ``str``; a binary frame as ``bytes`` (or None, which is
            how an empty binary frame arrives).
        max_ciphertext: the largest ciphertext accepted, in decoded bytes.
    """
    if not isinstance(data, str):
        return FrameError(ErrorCode.BINARY_NOT_SUPPORTED, "only JSON text frames are accepted")
    try:
        message = _client_decoder.decode(data)
    except msgspec.ValidationError as exc:
        return _explain(data, str(exc))
    except msgspec.DecodeError:
        return FrameError(ErrorCode.BAD_JSON, "the frame is not valid JSON")
    except RecursionError:  # msgspec's own depth guard: "[[[[..." is no envelope
        return _TOO_DEEP
    # msgspec lets a repeated key's last value win; the protocol refuses the frame.
    # Outside strings a ``:`` only ends a key, and no string of a decoded envelope
    # (its keys, its tag, its base64url values) can hold one: so a frame has as many
    # ``:`` as keys.
    keys = _KEYS[type(message)] + (
        isinstance(message, Hello) and message.proof is not msgspec.UNSET
    )
    if _colons(data, keys) != keys:
        return FrameError(ErrorCode.BAD_ENVELOPE, "a key appears more than once")
    match message:
        case Hello(auth=auth, proof=proof):
            if _b64url_len(auth) != AUTH_TOKEN_BYTES:
                return FrameError(
                    ErrorCode.BAD_ENVELOPE, f"auth must be {AUTH_TOKEN_BYTES} bytes in base64url"
                )
            if not isinstance(proof, msgspec.UnsetType) and not (
                1 <= (_b64url_len(proof) or 0) <= MAX_NONCE_BYTES
            ):
                return FrameError(
                    ErrorCode.BAD_ENVELOPE,
                    f"proof must be 1 to {MAX_NONCE_BYTES} bytes in base64url",
                )
        case SendMessage(iv=iv, ciphertext=ciphertext):
            return _sealed_error(iv, ciphertext, max_ciphertext) or message
        case SendSignal(iv=iv, ciphertext=ciphertext):
            return _sealed_error(iv, ciphertext, MAX_SIGNAL_BYTES) or message
        case ClearHistory():
            pass
    return message


def _sealed_error(iv: str, ciphertext: str, limit: int) -> FrameError | None:
    """Why an AES-GCM ``iv``/``ciphertext`` pair has the wrong shape, or None."""
    if _b64url_len(iv) != IV_BYTES:
        return FrameError(ErrorCode.BAD_ENVELOPE, f"iv must be {IV_BYTES} bytes in base64url")
    size = _b64url_len(ciphertext)
    if size is None or size < MIN_CIPHERTEXT:
        return FrameError(
            ErrorCode.BAD_ENVELOPE,
            f"ciphertext must be base64url of at least {MIN_CIPHERTEXT} bytes",
        )
    if size > limit:
        return FrameError(ErrorCode.TOO_LARGE, f"ciphertext is over {limit} bytes")
    return None


def _colons(text: str, expected: int) -> int:
    """How many ``:`` ``text`` holds, counting no further than one past ``expected``.

    ``str.find`` scans with memchr: about 1 us for a 44 KB frame, where
    ``str.count(":")`` takes some 25 us.
    """
    found = 0
    at = -1
    while found <= expected:
        at = text.find(":", at + 1)
        if at < 0:
            break
        found += 1
    return found


_TOO_DEEP: Final = FrameError(ErrorCode.BAD_JSON, "the frame nests too deeply")


def _explain(data: str, detail: str) -> FrameError:
    """Classify a frame that is JSON but not a valid envelope (the slow, rare path)."""
    try:
        raw = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return FrameError(ErrorCode.BAD_JSON, "the frame is not valid JSON")
    except RecursionError:
        return _TOO_DEEP
    if not isinstance(raw, dict):
        return FrameError(ErrorCode.BAD_JSON, "the frame is not a JSON object")
    kind = raw.get("type")
    if not isinstance(kind, str):
        return FrameError(ErrorCode.BAD_ENVELOPE, "the envelope has no string field `type`")
    if kind not in CLIENT_TYPES:
        return FrameError(ErrorCode.UNKNOWN_TYPE, "unknown envelope type")
    return FrameError(ErrorCode.BAD_ENVELOPE, detail)


def _b64url_len(text: str) -> int | None:
    """Decoded length of canonical unpadded base64url, or None if it is not that.

    Canonical means re-encoding gives the same text, so one byte string has exactly
    one accepted spelling (no stray padding bits), as age does for its encodings.
    """
    if len(text) % 4 == 1:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != text:
        return None
    return len(raw)


def b64url_decode(text: str) -> bytes:
    """Decode base64url without padding; the caller has validated ``text``."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# ----- server to client -------------------------------------------------------------


class MessageOut(msgspec.Struct, tag="message", frozen=True):
    """A relayed message, as sent live and kept in the history."""

    id: int
    sender: ClientId = msgspec.field(name="from")
    sent_at: int = msgspec.field(name="sentAt")
    iv: str
    ciphertext: str


class History(msgspec.Struct, tag="history", frozen=True):
    cap: int  # the most messages the room keeps (the server's --history)
    messages: list[MessageOut]


class SignalOut(msgspec.Struct, tag="signal", frozen=True):
    """A relayed signal: no id and no time, since it is never stored or ordered."""

    sender: ClientId = msgspec.field(name="from")
    iv: str
    ciphertext: str


# ``also_connected`` goes only to a clientId's other connections when one more joins.
SystemEvent = Literal["connected", "joined", "left", "cleared", "also_connected"]


class System(msgspec.Struct, tag="system", frozen=True):
    event: SystemEvent
    client_id: ClientId = msgspec.field(name="clientId")
    participants: list[ClientId] = msgspec.field(default_factory=list)


class HistoryCleared(msgspec.Struct, tag="history_cleared", frozen=True):
    by: ClientId


class Error(msgspec.Struct, tag="error", frozen=True):
    code: str
    message: str


class Challenge(msgspec.Struct, tag="challenge", frozen=True):
    """A new room under pressure: answer with a hello that carries a proof."""

    challenge: str  # base64url of pow.CHALLENGE_BYTES random bytes, this connection's own
    bits: int


ServerMessage = MessageOut | History | System | HistoryCleared | Error | Challenge | SignalOut

_encoder: Final = msgspec.json.Encoder()


def encode(envelope: ServerMessage) -> str:
    """Encode a server envelope once, as the text to send to every recipient."""
    return _encoder.encode(envelope).decode("utf-8")


def encode_error(error: FrameError) -> str:
    return encode(Error(code=error.code.value, message=error.message))


def decode_server(data: str | bytes) -> ServerMessage:
    """Decode a server envelope (for clients and tests). Raises msgspec errors."""
    return _server_decoder.decode(data)


_server_decoder: Final[msgspec.json.Decoder[ServerMessage]] = msgspec.json.Decoder(ServerMessage)
