"""Close codes and error codes: the only ways the server tells a peer something went wrong."""

import enum
from typing import Final, final


@final
class CloseCode(enum.IntEnum):
    """WebSocket close codes the server sends, each with one meaning."""

    GOING_AWAY = 1001  # the server is shutting down
    POLICY = 1008  # too many bad frames
    TOO_BIG = 1009  # a frame over the size limit (sent by Hypercorn itself)
    INTERNAL = 1011  # the room failed; reconnecting starts it afresh
    RESTART = 1012  # this relay lost events of the room (its storage reconnected): rejoin
    TRY_AGAIN = 1013  # a connection cap is reached (e.g. this source has too many sockets)
    TOO_SLOW = 4008  # the reader did not keep up with the room
    BAD_TOKEN = 4401  # the access token does not match the room's verifier
    HELLO_TIMEOUT = 4408  # no valid hello in time
    IDLE = 4410  # an authenticated socket sent nothing for the idle timeout
    ROOM_FULL = 4409  # the room has its maximum of participants
    RATE_ABUSE = 4429  # sustained sending over the rate limit
    TOO_MANY_ROOMS = 4503  # the server has its maximum of active rooms
    STORAGE_FULL = 4507  # the storage quota is reached: no new rooms


CLOSE_REASONS: Final[dict[CloseCode, str]] = {
    CloseCode.GOING_AWAY: "server shutting down",
    CloseCode.POLICY: "too many bad frames",
    CloseCode.TOO_BIG: "frame too large",
    CloseCode.INTERNAL: "room failed, reconnect",
    CloseCode.RESTART: "relay resynchronising, reconnect",
    CloseCode.TRY_AGAIN: "server busy, try again later",
    CloseCode.TOO_SLOW: "reader too slow",
    CloseCode.BAD_TOKEN: "wrong access token for this room",
    CloseCode.HELLO_TIMEOUT: "no hello in time",
    CloseCode.IDLE: "idle too long",
    CloseCode.ROOM_FULL: "room full",
    CloseCode.RATE_ABUSE: "rate limit abused",
    CloseCode.TOO_MANY_ROOMS: "too many active rooms",
    CloseCode.STORAGE_FULL: "server storage full: no new rooms",
}


@final
class ErrorCode(enum.StrEnum):
    """The ``code`` of an ``error`` envelope. The frame that caused it was dropped."""

    BAD_JSON = "bad_json"  # not a JSON object
    BAD_ENVELOPE = "bad_envelope"  # a missing, extra or ill-typed field, bad base64url or size
    UNKNOWN_TYPE = "unknown_type"  # a ``type`` the protocol does not have
    NOT_AUTHENTICATED = "not_authenticated"  # a frame other than hello before hello
    UNEXPECTED_HELLO = "unexpected_hello"  # a second hello
    BINARY_NOT_SUPPORTED = "binary_not_supported"  # a binary frame
    TOO_LARGE = "too_large"  # a ciphertext over the limit
    RATE_LIMITED = "rate_limited"  # over the token bucket, the room busy, or a clear too soon
    UNAVAILABLE = "unavailable"  # storage cannot be reached now: the frame was not stored or sent
    BAD_PROOF = "bad_proof"  # a proof of work that does not hold, or without a challenge
