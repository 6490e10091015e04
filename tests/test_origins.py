"""The Origin check, as a pure function."""

import pytest

from securechat.origins import normalize_origin, origin_allowed

PROXY = frozenset({"https://chat.example.org:443"})


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        (None, "127.0.0.1:8787", True),  # not a browser
        ("http://127.0.0.1:8787", "127.0.0.1:8787", True),
        ("http://LOCALHOST:8787", "localhost:8787", True),
        ("https://chat.example.org", "chat.example.org", True),  # default ports
        ("https://chat.example.org:443", "chat.example.org", True),
        ("http://[::1]:8787", "[::1]:8787", True),
        ("http://127.0.0.1:8788", "127.0.0.1:8787", False),
        ("https://evil.example", "127.0.0.1:8787", False),
        ("http://chat.example.org", "chat.example.org:443", False),  # scheme decides the port
        ("null", "127.0.0.1:8787", False),
        ("", "127.0.0.1:8787", False),
        ("http://127.0.0.1:8787/path", "127.0.0.1:8787", False),
        ("http://127.0.0.1:99999", "127.0.0.1:8787", False),
        ("https://chat.example.org", "securechat:8787", True),  # a proxy that rewrites Host
        ("https://other.example.org", "securechat:8787", False),
        ("http://127.0.0.1:8787", None, False),
    ],
)
def test_origin_allowed(origin: str | None, host: str | None, allowed: bool) -> None:
    assert origin_allowed(origin, host, PROXY) is allowed


def test_normalize() -> None:
    assert normalize_origin("HTTPS://Chat.Example.org") == "https://chat.example.org:443"
    assert normalize_origin("http://x:81/") == "http://x:81"
    assert normalize_origin("chat.example.org") is None
