"""The envelope decoder: any input in, a valid Struct or an error out, never an exception."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from securechat.errors import ErrorCode
from securechat.limits import MAX_SIGNAL_BYTES
from securechat.protocol import (
    ClearHistory,
    FrameError,
    Hello,
    SendMessage,
    SendSignal,
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
    {"type": st.sampled_from(["hello", "message", "clear_history", "signal", "other"])},
    optional={
        "auth": st.text(alphabet="AZaz09-_=+/\n:", max_size=50),
        "iv": st.text(alphabet="AZaz09-_=+/\n:", max_size=20),
        "ciphertext": st.text(alphabet="AZaz09-_=+/\n:", max_size=40),
        "extra": json_values,
    },
)


def check(result: object) -> None:
    assert isinstance(result, FrameError | Hello | SendMessage | ClearHistory | SendSignal)
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
    if isinstance(result, SendMessage | SendSignal):
        assert len(result.iv) == 16
    if not isinstance(result, FrameError):
        texts = [v for k, v in value.items() if k != "type" and isinstance(v, str)]
        assert not any(c in text for text in texts for c in "\n:=+/")


@given(st.binary(min_size=17, max_size=300), st.binary(min_size=12, max_size=12))
def test_valid_messages_round_trip(ciphertext: bytes, iv: bytes) -> None:
    frame = json.dumps({"type": "message", "iv": b64url(iv), "ciphertext": b64url(ciphertext)})
    assert decode_frame(frame, LIMIT) == SendMessage(iv=b64url(iv), ciphertext=b64url(ciphertext))


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=1, max_value=5000),
    st.sampled_from(["[", '{"a":', '{"type": "message", "iv": [', '{"x": {"y": ']),
    st.booleans(),
)
def test_deep_nesting(depth: int, opener: str, closed: bool) -> None:
    frame = opener + "[" * depth + ("]" * depth if closed else "")
    result = decode_frame(frame, LIMIT)
    check(result)
    assert isinstance(result, FrameError)


def render(pairs: list[tuple[str, object]]) -> str:
    return "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pairs) + "}"


@settings(max_examples=300, deadline=None)
@given(envelope_like, st.data())
def test_a_repeated_key_is_refused(value: dict[str, object], data: st.DataObject) -> None:
    pairs = list(value.items())
    key, again = data.draw(st.sampled_from(pairs))
    again = data.draw(st.sampled_from([again, "AAAA", "message", "hello"]))
    pairs.insert(data.draw(st.integers(0, len(pairs))), (key, again))
    result = decode_frame(render(pairs), LIMIT)
    check(result)
    assert isinstance(result, FrameError)


@settings(max_examples=200, deadline=None)
@given(
    st.binary(min_size=12, max_size=12),
    st.binary(min_size=17, max_size=60),
    st.sampled_from(["iv", "ciphertext"]),
    # JSON escapes: a raw newline inside a string is not JSON at all.
    st.sampled_from(["\\n", "\\r\\n", "\\n\\n", " ", "\\u000a", "\\u000A"]),
)
def test_base64url_with_a_trailing_newline_is_refused(
    iv: bytes, ciphertext: bytes, field: str, suffix: str
) -> None:
    fields = {"iv": b64url(iv), "ciphertext": b64url(ciphertext)}
    frame = (
        '{"type": "message", '
        + ", ".join(f'"{k}": "{v}{suffix if k == field else ""}"' for k, v in fields.items())
        + "}"
    )
    result = decode_frame(frame, LIMIT)
    assert isinstance(result, FrameError)
    assert result.code is ErrorCode.BAD_ENVELOPE


def test_a_repeated_key_with_valid_values_is_a_bad_envelope() -> None:
    token = b64url(bytes(32))
    for frame in (
        '{"type":"hello","auth":"' + token + '","auth":"' + token + '"}',
        '{"type":"hello","type":"hello","auth":"' + token + '"}',
        '{"type":"clear_history","type":"clear_history"}',
        '{"type":"hello","auth":"' + token + '","proof":"AAAA","proof":"AAAA"}',
        '{"type":"hello","auth":"' + token + '","auth":"' + token + '","proof":"AAAA"}',
        '{"type":"message","iv":"AAAAAAAAAAAAAAAA","iv":"AAAAAAAAAAAAAAAA","ciphertext":"'
        + b64url(bytes(20))
        + '"}',
        '{"type":"signal","iv":"AAAAAAAAAAAAAAAA","ciphertext":"'
        + b64url(bytes(20))
        + '","ciphertext":"'
        + b64url(bytes(20))
        + '"}',
        '{"type":"signal","type":"signal","iv":"AAAAAAAAAAAAAAAA","ciphertext":"'
        + b64url(bytes(20))
        + '"}',
    ):
        assert decode_frame(frame, LIMIT) == FrameError(
            ErrorCode.BAD_ENVELOPE, "a key appears more than once"
        )
    # Whitespace, escapes and key order do not matter.
    spaced = '{ "auth" : "' + token + '" ,\n "typ\\u0065" :\t"hello" }'
    assert decode_frame(spaced, LIMIT) == Hello(auth=token)
    # A proof is one more key, not a repeated one.
    proved = '{"type":"hello","auth":"' + token + '","proof":"AAAA"}'
    assert decode_frame(proved, LIMIT) == Hello(auth=token, proof="AAAA")


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=4, max_size=16))
def test_client_ids_are_ascii(text: str) -> None:
    parsed = parse_client_id(text)
    if parsed is not None:
        assert parsed.isascii()
        assert parsed == text


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


def test_signal_sizes() -> None:
    iv = b64url(bytes(12))

    def signal(iv: str, ciphertext: bytes) -> str:
        return json.dumps({"type": "signal", "iv": iv, "ciphertext": b64url(ciphertext)})

    at_limit = signal(iv, bytes(MAX_SIGNAL_BYTES))
    assert decode_frame(at_limit, LIMIT) == SendSignal(iv, b64url(bytes(MAX_SIGNAL_BYTES)))
    assert isinstance(decode_frame(signal(iv, bytes(17)), LIMIT), SendSignal)
    # Its own limit, however large a message may be.
    assert decode_frame(signal(iv, bytes(MAX_SIGNAL_BYTES + 1)), LIMIT) == FrameError(
        ErrorCode.TOO_LARGE, f"ciphertext is over {MAX_SIGNAL_BYTES} bytes"
    )
    for bad in (signal(iv, bytes(16)), signal(b64url(bytes(11)), bytes(20))):
        result = decode_frame(bad, LIMIT)
        assert isinstance(result, FrameError)
        assert result.code is ErrorCode.BAD_ENVELOPE
    extra = json.dumps({"type": "signal", "iv": iv, "ciphertext": b64url(bytes(20)), "id": 1})
    result = decode_frame(extra, LIMIT)
    assert isinstance(result, FrameError)
    assert result.code is ErrorCode.BAD_ENVELOPE


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
    for bad in (
        "abc",
        "a" * 17,
        "ab.cd",
        "abcd\n",
        "",
        "al\u0131ce01",
        "\u017ftuff",
        "\u212aelvin",
    ):
        assert parse_client_id(bad) is None
