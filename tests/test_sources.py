"""Sources, the per-source count, the descriptor cap and the failure log: no sockets."""

import logging

import pytest

from securechat.capacity import (
    ConnectionGauge,
    EveryInterval,
    derived_max_connections,
    effective_max_connections,
)
from securechat.failures import FailureLog, failure_kind
from securechat.limits import REFUSALS_IN_FLIGHT
from securechat.sources import SourceLimiter, parse_networks, source_key, source_of

PROXY = parse_networks(["10.0.0.0/8", "::1"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("192.0.2.1", [], "192.0.2.1"),  # a direct peer is its own source
        ("192.0.2.1", ["198.51.100.1"], "192.0.2.1"),  # an untrusted peer's header is ignored
        ("::ffff:192.0.2.1", [], "192.0.2.1"),  # dual-stack spelling of an IPv4 peer
        ("10.1.2.3", ["203.0.113.9, 198.51.100.1"], "198.51.100.1"),  # the proxy's entry
        ("10.1.2.3", ["203.0.113.9", "198.51.100.1"], "198.51.100.1"),  # over two lines
        ("10.1.2.3", [], None),  # a trusted proxy that says nothing
        ("10.1.2.3", ["unknown"], None),
        ("10.1.2.3", ["198.51.100.1:4711"], None),  # not an address
        ("::1", [" 2001:db8::1 "], "2001:db8::1"),
        (None, ["198.51.100.1"], None),  # a unix socket or a test client
        ("not-an-ip", [], None),
    ],
)
def test_source_of(peer: str | None, forwarded: list[str], expected: str | None) -> None:
    assert source_of(peer, forwarded, PROXY) == expected


def test_loopback_is_not_trusted_by_default() -> None:
    assert source_of("127.0.0.1", ["198.51.100.1"], parse_networks([])) == "127.0.0.1"


def test_parse_networks_names_a_bad_entry() -> None:
    with pytest.raises(ValueError, match="nope"):
        parse_networks(["10.0.0.1", "nope"])


def test_ipv6_sources_count_per_64() -> None:
    assert source_key("2001:db8:1:2:aaaa::1") == source_key("2001:db8:1:2:bbbb::2")
    assert source_key("2001:db8:1:3::1") != source_key("2001:db8:1:2::1")
    assert source_key("192.0.2.1") == "192.0.2.1"


def test_limiter_caps_per_source_and_forgets_closed_sources() -> None:
    limiter = SourceLimiter(2)
    first, second = limiter.try_admit("192.0.2.1"), limiter.try_admit("192.0.2.1")
    assert first is not None
    assert second is not None
    assert limiter.try_admit("192.0.2.1") is None
    other = limiter.try_admit("192.0.2.2")
    unknown = limiter.try_admit(None)  # unknown sources are not counted
    assert other is not None
    assert unknown is not None
    stats = limiter.statistics()
    assert (stats.sources, stats.connections, stats.refused) == (2, 3, 1)
    for admission in (first, second, other, unknown):
        limiter.release(admission)
    assert limiter.statistics().sources == 0  # nothing left behind


def test_limiter_off_counts_nothing() -> None:
    limiter = SourceLimiter(0)
    for _ in range(100):
        assert limiter.try_admit("192.0.2.1") is not None
    assert limiter.statistics().sources == 0


@pytest.mark.parametrize(
    ("descriptors", "expected"), [(1024, 896), (256, 192), (65536, 57344), (40, 16)]
)
def test_derived_connection_cap(descriptors: int, expected: int) -> None:
    assert derived_max_connections(descriptors) == expected


def test_configured_cap_never_passes_the_descriptors() -> None:
    assert effective_max_connections(0, 1024) == 896
    assert effective_max_connections(100, 1024) == 100
    assert effective_max_connections(5000, 1024) == 896


def test_gauge_counts_against_its_cap_and_bounds_refusals() -> None:
    gauge = ConnectionGauge(2)
    assert gauge.try_open()
    assert gauge.try_open()
    assert not gauge.try_open()
    gauge.close()
    assert gauge.try_open()
    assert all(gauge.try_start_refusal() for _ in range(REFUSALS_IN_FLIGHT))
    assert not gauge.try_start_refusal()
    gauge.end_refusal()
    assert gauge.try_start_refusal()
    stats = gauge.statistics()
    assert (stats.open, stats.limit, stats.refused) == (2, 2, 1)


def _record() -> logging.LogRecord:
    error = OSError(24, "Too many open files")
    return logging.LogRecord(
        "trio.serve_listeners", logging.ERROR, "", 0, "accept %s", ("x",), (OSError, error, None)
    )


def test_accept_failures_are_logged_once_per_interval_without_traceback() -> None:
    gate = EveryInterval(interval=3600)
    first = _record()
    assert gate.filter(first)
    assert first.exc_info is None
    assert not any(gate.filter(_record()) for _ in range(50))


def _raise_inside() -> None:
    raise KeyError("a room id the peer sent")


def test_failure_log_names_the_kind_never_the_message(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = FailureLog(interval=60, clock=lambda: now[0])
    errors = []
    for _ in range(3):
        try:
            _raise_inside()
        except KeyError as exc:
            errors.append(exc)
    assert failure_kind(errors[0]) == "builtins.KeyError in tests.test_sources._raise_inside"
    with caplog.at_level(logging.ERROR, logger="securechat.failures"):
        log.report(ExceptionGroup("two", errors[:2]))
        now[0] = 61.0
        log.report(errors[2])
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "1 more of this kind" in messages[1]
    assert "room id" not in caplog.text
