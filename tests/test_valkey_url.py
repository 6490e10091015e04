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
        (
            "redis+sentinel://10.0.0.1/chat",
            ValkeyTarget(sentinels=(("10.0.0.1", 26379),), service="chat"),
        ),
        (
            "valkey+sentinel://s1:26380,s2,[::1]:26381/valkey-main.1/2",
            ValkeyTarget(
                sentinels=(("s1", 26380), ("s2", 26379), ("::1", 26381)),
                service="valkey-main.1",
                db=2,
            ),
        ),
        (
            "Rediss+Sentinel://relay:pa%40ss@s1:26379/chat/0?sentinel_password=s%2Fp",
            ValkeyTarget(
                sentinels=(("s1", 26379),),
                service="chat",
                username="relay",
                password="pa@ss",
                tls=True,
                sentinel_password="s/p",
            ),
        ),
        (
            "redis+sentinel://:secret@s1/chat?sentinel_password=",
            ValkeyTarget(sentinels=(("s1", 26379),), service="chat", password="secret"),
        ),
    ],
)
def test_accepted_urls(url: str, target: ValkeyTarget) -> None:
    assert parse_valkey_url(url) == target


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (
            "http://valkey:6379",
            "must start with redis://, rediss://, valkey://, unix:// or redis+sentinel://",
        ),
        ("valkey:6379", "names no host"),
        ("", "must start with"),
        ("redis+sentinel://valkey", "names its service after the hosts"),
        ("redis+sentinel://valkey/", "names its service after the hosts"),
        ("redis+sentinel://valkey/chat me", "names its service after the hosts"),
        ("redis+sentinel://valkey/" + "c" * 129, "names its service after the hosts"),
        ("redis+sentinel:///chat", "lists its sentinels as host:port"),
        ("redis+sentinel://s1,,s2/chat", "lists its sentinels as host:port"),
        ("redis+sentinel://s1:x/chat", "malformed"),
        ("redis+sentinel://s1:26379:1/chat", "malformed"),
        ("redis+sentinel://" + ",".join(["s"] * 17) + "/chat", "at most 16 sentinels"),
        ("redis+sentinel://s1/chat/x", "database must be a number"),
        ("redis+sentinel://s1/chat/1/2", "ends with /SERVICE or /SERVICE/DB"),
        ("redis+sentinel://s1/chat?db=1", "no query parameter but sentinel_password"),
        ("redis+sentinel://s1/chat#x", "no #fragment"),
        ("sentinel://s1/chat", "must start with"),
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
    with pytest.raises(ValueError, match=r"(the|a unix://|a Sentinel) Valkey URL") as caught:
        parse_valkey_url(url)
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://relay:hunter2@valkey/x",
        "redis+sentinel://relay:hunter2@s1:hunter2/chat",
        "redis+sentinel://relay:hunter2@s1/hunter2 x",
        "redis+sentinel://s1/chat?sentinel_password=hunter2&sentinel_password=hunter2",
        "redis+sentinel://s1/chat?sentinel_password=hunter2#hunter2",
        "redis+sentinel://relay:hunter2@/chat",
    ],
)
def test_a_refusal_never_repeats_the_password(url: str) -> None:
    with pytest.raises(ValueError, match="Valkey URL") as caught:
        parse_valkey_url(url)
    assert "hunter2" not in str(caught.value)


def test_describe_names_the_target_without_credentials() -> None:
    target = parse_valkey_url("rediss://relay:hunter2@valkey:6380/2")
    assert target.describe() == "rediss://valkey:6380 db 2"
    assert parse_valkey_url("unix://:pw@/run/v.sock").describe() == "unix:///run/v.sock db 0"


def test_describe_names_the_sentinels_and_the_service_without_credentials() -> None:
    url = "rediss+sentinel://relay:hunter2@s1,[::1]:26380/chat/3?sentinel_password=hunter3"
    target = parse_valkey_url(url)
    assert target.describe() == "rediss+sentinel://s1:26379,[::1]:26380 service chat db 3"
    assert "hunter" not in repr(target)  # a traceback never shows a password either
