"""The envelope decoder: any input in, a valid Struct or an error out, never an exception."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from securechat.errors import ErrorCode
from securechat.protocol import (
    ClearHistory,
    FrameError,
    Hello,
    SendMessage,
    decode_frame,
    parse_client_id,
    parse_room_id,
)
from tests.harness import b64url

LIMIT = 32768

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=10,
)

envelope_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["hello", "message", "clear_history", "other"])},
    optional={
        "auth": st.text(alphabet="AZaz09-_=+/", max_size=50),
        "iv": st.text(alphabet="AZaz09-_=+/", max_size=20),
        "ciphertext": st.text(alphabet="AZaz09-_=+/", max_size=40),
        "extra": json_values,
    },
)


def check(result: object) -> None:
    assert isinstance(result, FrameError | Hello | SendMessage | ClearHistory)
    if isinstance(result, FrameError):
        assert isinstance(result.code, ErrorCode)
        assert result.message


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes(data: bytes) -> None:
    check(decode_frame(data, LIMIT))
    check(decode_frame(data.decode("utf-8", "replace"), LIMIT))


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json(value: object) -> None:
    check(decode_frame(json.dumps(value), LIMIT))


@settings(max_examples=500, deadline=None)
@given(envelope_like)
def test_envelope_shaped_json(value: dict[str, object]) -> None:
    result = decode_frame(json.dumps(value), LIMIT)
    check(result)
    if isinstance(result, SendMessage):
        assert len(result.iv) == 16


@given(st.binary(min_size=17, max_size=300), st.binary(min_size=12, max_size=12))
def test_valid_messages_round_trip(ciphertext: bytes, iv: bytes) -> None:
    frame = json.dumps({"type": "message", "iv": b64url(iv), "ciphertext": b64url(ciphertext)})
    assert decode_frame(frame, LIMIT) == SendMessage(iv=b64url(iv), ciphertext=b64url(ciphertext))


def test_limits_are_inclusive() -> None:
    iv = b64url(bytes(12))
    at_limit = json.dumps({"type": "message", "iv": iv, "ciphertext": b64url(bytes(LIMIT))})
    assert isinstance(decode_frame(at_limit, LIMIT), SendMessage)
    over = json.dumps({"type": "message", "iv": iv, "ciphertext": b64url(bytes(LIMIT + 1))})
    assert decode_frame(over, LIMIT) == FrameError(
        ErrorCode.TOO_LARGE, "ciphertext is over 32768 bytes"
    )
    minimal = json.dumps({"type": "message", "iv": iv, "ciphertext": b64url(bytes(17))})
    assert isinstance(decode_frame(minimal, LIMIT), SendMessage)


def test_hello_and_clear() -> None:
    token = b64url(bytes(32))
    assert decode_frame(json.dumps({"type": "hello", "auth": token}), LIMIT) == Hello(auth=token)
    assert decode_frame('{"type":"clear_history"}', LIMIT) == ClearHistory()
    for bad in (b64url(bytes(31)), b64url(bytes(33)), token + "=", token[:-1] + "/"):
        result = decode_frame(json.dumps({"type": "hello", "auth": bad}), LIMIT)
        assert isinstance(result, FrameError)
        assert result.code is ErrorCode.BAD_ENVELOPE


def test_id_formats() -> None:
    assert parse_room_id("a" * 64) == "a" * 64
    for bad in ("", "a" * 65, "a/b", "a.b", "ä", "a b", "a\n"):
        assert parse_room_id(bad) is None
    assert parse_client_id("AbC-_9") == "AbC-_9"
    for bad in ("abc", "a" * 17, "ab.cd", "abcd\n", ""):
        assert parse_client_id(bad) is None
