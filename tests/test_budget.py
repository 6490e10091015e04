"""The creation budget on a fake clock: free within the burst, priced beyond, drains back."""

import pytest

from securechat.budget import (
    BASE_BITS,
    MAX_BITS,
    MAX_EXCESS,
    BudgetSettings,
    CreationBudget,
    price,
)

MINUTE = 60.0


def budget(
    per_minute: float = 6.0,
    burst: int = 3,
    source_per_minute: float = 60.0,
    source_burst: int = 1000,
    max_sources: int = 4,
) -> CreationBudget:
    settings = BudgetSettings(per_minute, burst, source_per_minute, source_burst, max_sources)
    return CreationBudget(settings, now=0.0)


def create(b: CreationBudget, n: int, source: str | None = None, now: float = 0.0) -> list[int]:
    """Make ``n`` rooms at ``now``, each paying its price; return the prices."""
    prices = []
    for _ in range(n):
        prices.append(b.bits(source, now))
        b.charge(source, now)
    return prices


@pytest.mark.parametrize(
    ("level", "bits"),
    [
        (0.0, 0),
        (2.0, 0),  # the third room of a burst of 3 still fits
        (2.5, BASE_BITS),  # half a room over: no whole token, so a proof
        (3.0, BASE_BITS),  # excess 1
        (4.0, BASE_BITS + 1),  # excess 2: twice the work
        (4.9, BASE_BITS + 1),  # excess 1.9 rounds up to 2
        (5.1, BASE_BITS + 2),  # excess 3.1 rounds up to 4
        (6.0, BASE_BITS + 2),  # excess 4
        (2.0 + 2**5, BASE_BITS + 5),
        (2.0 + MAX_EXCESS, MAX_BITS),
        (1e12, MAX_BITS),  # capped: a browser can always finish
    ],
)
def test_price_doubles_with_the_excess_and_is_capped(level: float, bits: int) -> None:
    assert price(level, burst=3) == bits


def test_the_burst_is_free_and_the_next_room_is_priced() -> None:
    b = budget(burst=3)
    assert create(b, 3) == [0, 0, 0]
    assert create(b, 5) == [BASE_BITS, BASE_BITS + 1, BASE_BITS + 1, BASE_BITS + 2, BASE_BITS + 2]


def test_the_price_falls_back_to_zero_when_quiet() -> None:
    b = budget(per_minute=6.0, burst=3)  # drains a room every 10 s
    create(b, 3 + 8)  # level 11: excess 9, three bits over the base
    assert b.bits(None, 0.0) == BASE_BITS + 3
    assert b.bits(None, 50.0) == BASE_BITS + 2  # level 6: excess 4
    assert b.bits(None, 70.0) == BASE_BITS + 1  # level 4
    assert b.bits(None, 80.0) == BASE_BITS  # level 3
    assert b.bits(None, 90.0) == 0  # level 2: the next room fits the burst again
    assert b.statistics(1000.0).level == 0.0


def test_a_flood_is_pressed_down_to_the_rate() -> None:
    """A client that pays every price gets, in the long run, the budget's rate within 2x.

    The price moves in whole bits, so the flood settles where one bit more would
    take it under the rate: between half and twice the rate (below the cap).
    """
    b = budget(per_minute=6.0, burst=3)
    hashes_per_second = 2.0**16  # slow enough that the cap is not reached
    now, late_rooms = 0.0, 0
    while now < 60 * MINUTE:
        bits = b.bits(None, now)
        now += 2.0**bits / hashes_per_second  # solving takes this long
        b.charge(None, now)
        late_rooms += now > 30 * MINUTE
    assert BASE_BITS < b.bits(None, now) < MAX_BITS
    assert 6 * 30 / 2 <= late_rooms <= 6 * 30 * 2


def test_the_level_is_capped_so_recovery_is_bounded() -> None:
    b = budget(per_minute=6.0, burst=3)
    create(b, 100_000)
    assert b.statistics(0.0).level == 3 + MAX_EXCESS
    drain_seconds = (MAX_EXCESS + 1) * 10.0
    assert b.bits(None, drain_seconds) == 0


def test_a_busy_source_pays_while_others_are_free() -> None:
    b = budget(per_minute=600.0, burst=1000, source_per_minute=6.0, source_burst=2)
    assert create(b, 3, source="198.51.100.7") == [0, 0, BASE_BITS]
    assert b.bits("198.51.100.7", 0.0) == BASE_BITS + 1
    assert b.bits("203.0.113.9", 0.0) == 0  # another address
    assert b.bits(None, 0.0) == 0  # an unknown source: only the server-wide budget
    assert b.bits("198.51.100.7", 30.0) == 0  # drained


def test_one_ipv6_subscriber_is_one_source() -> None:
    b = budget(per_minute=600.0, burst=1000, source_per_minute=6.0, source_burst=2)
    # Addresses of one /64 (what one subscriber is given) share a budget.
    assert create(b, 2, source="2001:db8:1:2::1") == [0, 0]
    assert b.bits("2001:db8:1:2:ffff::7", 0.0) == BASE_BITS
    assert b.bits("2001:db8:1:3::1", 0.0) == 0  # the next /64 is another source


def test_the_server_wide_price_applies_to_every_source() -> None:
    b = budget(burst=2, source_burst=1000)
    create(b, 2, source="198.51.100.7")
    assert b.bits("203.0.113.9", 0.0) == BASE_BITS
    assert b.bits(None, 0.0) == BASE_BITS


def test_sources_kept_are_bounded_least_recently_seen_first() -> None:
    A, B, C, D = (f"198.51.100.{i}" for i in range(1, 5))  # sources are addresses
    b = budget(per_minute=600.0, burst=1000, source_per_minute=1.0, source_burst=1, max_sources=3)
    for source in (A, B, C):
        create(b, 1, source=source)
    create(b, 1, source=A)  # "a" is now the most recent
    create(b, 1, source=D)  # so "b" is dropped
    assert b.statistics(0.0).sources == 3
    assert b.bits(B, 0.0) == 0  # forgotten: starts afresh
    assert b.bits(A, 0.0) == BASE_BITS + 1
    assert b.bits(C, 0.0) == BASE_BITS


def test_a_clock_that_goes_back_changes_nothing() -> None:
    b = budget(burst=1)
    create(b, 1, now=100.0)
    assert b.bits(None, 50.0) == BASE_BITS
    assert b.bits(None, 100.0) == BASE_BITS


def test_a_shared_level_counts_every_process_and_keeps_what_was_charged_since() -> None:
    settings = BudgetSettings(
        rooms_per_minute=0.0, burst=4, source_rooms_per_minute=0.0, source_burst=100
    )
    budget = CreationBudget(settings, now=0.0)
    budget.charge(None, 1.0)
    budget.charge(None, 1.0)
    shared = budget.unshared()
    assert shared == 2
    budget.charge(None, 2.0)  # after the beat left, before its answer came
    budget.share(level=5.0, counted=shared, now=3.0)  # 3 rooms of another process
    assert budget.unshared() == 1
    assert budget.statistics(3.0).level == 6.0
    assert budget.bits(None, 3.0) > 0
