"""--valkey URLs: every accepted form, and one readable line for anything else."""

# ruff: noqa: S106  (the passwords here are test data)

import pytest

from securechat.valkey.url import ValkeyTarget, parse_valkey_url


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("redis://127.0.0.1", ValkeyTarget(host="127.0.0.1")),
        ("redis://valkey:6380/3", ValkeyTarget(host="valkey", port=6380, db=3)),
        ("valkey://valkey/2", ValkeyTarget(host="valkey", db=2)),
        ("VALKEY://valkey", ValkeyTarget(host="valkey")),
        ("rediss://valkey.example:6390", ValkeyTarget(host="valkey.example", port=6390, tls=True)),
        ("redis://:pa%40ss@valkey/1", ValkeyTarget(host="valkey", db=1, password="pa@ss")),
        (
            "rediss://relay:secret@valkey:6379/0",
            ValkeyTarget(host="valkey", username="relay", password="secret", tls=True),
        ),
        ("redis://[::1]:6379?db=4", ValkeyTarget(host="::1", db=4)),
        ("unix:///run/valkey/valkey.sock", ValkeyTarget(socket="/run/valkey/valkey.sock")),
        (
            "unix://relay:secret@/run/valkey.sock?db=5",
            ValkeyTarget(socket="/run/valkey.sock", db=5, username="relay", password="secret"),
        ),
    ],
)
def test_accepted_urls(url: str, target: ValkeyTarget) -> None:
    assert parse_valkey_url(url) == target


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://valkey:6379", "must start with redis://, rediss://, valkey:// or unix://"),
        ("valkey:6379", "names no host"),
        ("", "must start with"),
        ("redis+sentinel://valkey", "must start with"),
        ("redis://", "names no host"),
        ("redis://valkey:99999", "malformed"),
        ("redis://valkey/zero", "database must be a number"),
        ("redis://valkey/-1", "database must be a number"),
        ("redis://valkey/1?db=2", "database twice"),
        ("redis://valkey/1?timeout=3", "no query parameter but db"),
        ("redis://valkey/1#x", "no #fragment"),
        ("unix://", "names a socket path"),
        ("unix://host/run/valkey.sock", "names a socket path"),
    ],
)
def test_refused_urls_say_why_in_one_line(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=r"(the|a unix://) Valkey URL") as caught:
        parse_valkey_url(url)
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_refusal_never_repeats_the_password() -> None:
    with pytest.raises(ValueError, match="database") as caught:
        parse_valkey_url("redis://relay:hunter2@valkey/x")
    assert "hunter2" not in str(caught.value)


def test_describe_names_the_target_without_credentials() -> None:
    target = parse_valkey_url("rediss://relay:hunter2@valkey:6380/2")
    assert target.describe() == "rediss://valkey:6380 db 2"
    assert parse_valkey_url("unix://:pw@/run/v.sock").describe() == "unix:///run/v.sock db 0"
