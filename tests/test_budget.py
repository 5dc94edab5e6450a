"""The load budget and the back-off of one WHM server, with a fake clock: what each call is
charged, when refreshing may go, how far the debt goes, when concurrency drops and comes back."""

from __future__ import annotations

import pytest

from whm_exporter.collect.budget import (
    BURST,
    COOLDOWN,
    RECOVERY,
    TOLERANCE,
    WINDOW,
    Backoff,
    Budget,
    Pace,
)

MAILBOX = "get_mailbox_status_list"


def test_a_new_budget_holds_a_short_burst() -> None:
    budget = Budget(1.0)
    assert budget.allows(0.0)
    assert budget.balance == pytest.approx(1.0 * BURST)


def test_the_bucket_fills_at_the_rate_and_stops_at_the_burst() -> None:
    budget = Budget(2.0)
    budget.charge(2.0 * BURST, 0.0)
    assert budget.balance == pytest.approx(0.0)
    assert not budget.allows(0.0)
    assert budget.allows(0.1)
    assert budget.balance == pytest.approx(0.2)
    budget.allows(1000.0)
    assert budget.balance == pytest.approx(2.0 * BURST)


def test_the_debt_stops_at_one_window() -> None:
    budget = Budget(0.5)
    # A first pass: 8 calls in flight for ten minutes, far past what a minute allows.
    budget.charge(8 * 600.0, 0.0)
    assert budget.balance == pytest.approx(-0.5 * WINDOW)
    assert budget.wait(0.0) == pytest.approx(WINDOW)
    assert not budget.allows(WINDOW - 0.1)
    assert budget.allows(WINDOW + 0.1)


def test_wait_is_the_time_the_debt_takes_to_fill() -> None:
    budget = Budget(1.0)
    budget.charge(BURST + 3.0, 10.0)
    assert budget.wait(10.0) == pytest.approx(3.0)
    assert budget.wait(12.0) == pytest.approx(1.0)
    assert budget.wait(13.5) == 0.0


def test_no_budget_always_allows() -> None:
    budget = Budget(0.0)
    budget.charge(1e9, 0.0)
    assert budget.allows(0.0)
    assert budget.wait(0.0) == 0.0


def test_a_clock_that_goes_back_adds_nothing() -> None:
    budget = Budget(1.0)
    budget.charge(BURST, 10.0)
    assert not budget.allows(5.0)
    assert budget.balance == pytest.approx(0.0)


def test_a_call_is_charged_its_estimate_then_its_real_duration() -> None:
    pace = Pace(1.0, 8)
    # Nothing known yet: a first call costs nothing up front, then all it took.
    assert pace.started(MAILBOX, 0.0) == 0.0
    pace.ended(MAILBOX, 0.0, 0.4, 0.0, struggling=False)
    assert pace.budget.balance == pytest.approx(BURST - 0.4)
    charged = pace.started(MAILBOX, 0.0)
    assert charged == pytest.approx(0.4)
    assert pace.budget.balance == pytest.approx(BURST - 0.8)
    # It took 0.2 s: 0.2 given back.
    pace.ended(MAILBOX, charged, 0.2, 0.0, struggling=False)
    assert pace.budget.balance == pytest.approx(BURST - 0.6)
    # The estimate moves towards what calls take.
    assert 0.2 < pace.estimate(MAILBOX) < 0.4


def test_each_function_has_its_own_estimate() -> None:
    pace = Pace(1.0, 8)
    pace.ended("listaccts", 0.0, 5.0, 0.0, struggling=False)
    pace.ended(MAILBOX, 0.0, 0.1, 0.0, struggling=False)
    assert pace.estimate("listaccts") == 5.0
    assert pace.estimate(MAILBOX) == 0.1
    assert pace.estimate("list_pops_for") == 0.0


def test_refreshes_in_flight_count_against_the_back_off_limit() -> None:
    pace = Pace(100.0, 2)
    assert pace.refresh_allowed(0.0)
    pace.refreshing = 2
    assert not pace.refresh_allowed(0.0)
    pace.refreshing = 1
    assert pace.refresh_allowed(0.0)


def test_an_empty_bucket_holds_refreshes_back() -> None:
    pace = Pace(1.0, 8)
    pace.budget.charge(BURST + 1.0, 0.0)
    assert not pace.refresh_allowed(0.0)
    assert pace.refresh_allowed(1.5)


def test_the_concurrency_a_probe_expects_is_the_budget_below_the_limit() -> None:
    assert Pace(0.5, 8).concurrency() == 0.5
    assert Pace(20.0, 8).concurrency() == 8
    assert Pace(0.0, 8).concurrency() == 8
    pace = Pace(4.0, 8)
    pace.backoff.limit = 2
    assert pace.concurrency() == 2


def steady(backoff: Backoff, seconds: float, start: float, end: float, step: float = 0.1) -> float:
    """Calls of ``seconds`` each, one every ``step``, from ``start`` to ``end``."""
    now = start
    while now < end:
        backoff.observe(MAILBOX, seconds, now, struggling=False)
        now += step
    return now


def test_latency_well_above_its_baseline_lowers_the_limit() -> None:
    backoff = Backoff(8)
    now = steady(backoff, 0.1, 0.0, 30.0)
    assert backoff.limit == 8
    # Four times slower: the recent latency climbs past the tolerance and the limit drops.
    steady(backoff, 0.4, now, now + 1.0)
    assert backoff.recent > TOLERANCE
    assert backoff.limit < 8


def test_latency_within_the_tolerance_keeps_the_limit() -> None:
    backoff = Backoff(8)
    now = steady(backoff, 0.1, 0.0, 30.0)
    steady(backoff, 0.1 * TOLERANCE * 0.9, now, now + 60.0)
    assert backoff.limit == 8


def test_the_limit_drops_once_per_cooldown_and_never_below_one() -> None:
    backoff = Backoff(8)
    backoff.observe(MAILBOX, 10.0, 0.0, struggling=True)
    assert backoff.limit == 4
    # A burst of failures at once (every call in flight timed out together) is one cut.
    for _ in range(5):
        backoff.observe(MAILBOX, 10.0, 0.5, struggling=True)
    assert backoff.limit == 4
    backoff.observe(MAILBOX, 10.0, COOLDOWN, struggling=True)
    assert backoff.limit == 2
    backoff.observe(MAILBOX, 10.0, 2 * COOLDOWN, struggling=True)
    backoff.observe(MAILBOX, 10.0, 3 * COOLDOWN, struggling=True)
    assert backoff.limit == 1


def test_a_failure_does_not_teach_the_baseline() -> None:
    backoff = Backoff(8)
    backoff.observe(MAILBOX, 10.0, 0.0, struggling=True)
    assert backoff.baseline(MAILBOX) is None
    backoff.observe(MAILBOX, 0.1, 1.0, struggling=False)
    assert backoff.baseline(MAILBOX) == 0.1


def test_the_limit_recovers_one_step_per_recovery_period_while_well() -> None:
    backoff = Backoff(8)
    steady(backoff, 0.1, 0.0, 1.0)
    backoff.observe(MAILBOX, 10.0, 1.0, struggling=True)
    backoff.observe(MAILBOX, 10.0, 1.0 + COOLDOWN, struggling=True)
    assert backoff.limit == 2
    cut = 1.0 + COOLDOWN
    # Well again: one more call in flight per RECOVERY seconds, not all at once.
    steady(backoff, 0.1, cut + 0.1, cut + RECOVERY - 0.05)
    assert backoff.limit == 2
    steady(backoff, 0.1, cut + RECOVERY, cut + RECOVERY + 0.05)
    assert backoff.limit == 3
    steady(backoff, 0.1, cut + RECOVERY + 0.1, cut + 10 * RECOVERY)
    assert backoff.limit == 8


def test_a_slow_down_does_not_become_the_baseline_at_once() -> None:
    backoff = Backoff(8)
    now = steady(backoff, 0.1, 0.0, 60.0)
    now = steady(backoff, 0.4, now, now + 30.0)
    baseline = backoff.baseline(MAILBOX)
    assert baseline is not None
    # Thirty seconds of 4x: the baseline moved, but by far less than the slow-down.
    assert 0.1 < baseline < 0.1 * 1.2


def test_a_lasting_change_becomes_the_baseline_in_time() -> None:
    backoff = Backoff(8)
    now = steady(backoff, 0.1, 0.0, 10.0)
    steady(backoff, 0.3, now, now + 3600.0, step=1.0)
    baseline = backoff.baseline(MAILBOX)
    assert baseline is not None
    assert baseline == pytest.approx(0.3, rel=0.05)
    assert backoff.limit == 8


def test_each_function_is_measured_against_its_own_baseline() -> None:
    backoff = Backoff(8)
    now = 0.0
    while now < 30.0:
        backoff.observe(MAILBOX, 0.1, now, struggling=False)
        backoff.observe("listaccts", 3.0, now + 0.05, struggling=False)
        now += 0.1
    # listaccts is thirty times slower than a mailbox call, by nature: no back-off.
    assert backoff.limit == 8


def test_one_slow_call_is_not_enough_to_back_off() -> None:
    backoff = Backoff(8)
    backoff.observe(MAILBOX, 0.1, 0.0, struggling=False)
    # 2.4 times the baseline, once: the recent latency moves a fifth of the way.
    backoff.observe(MAILBOX, 0.24, 1.0, struggling=False)
    assert backoff.recent == pytest.approx(1.28)
    assert backoff.limit == 8


def test_latency_exactly_at_the_tolerance_does_not_back_off() -> None:
    backoff = Backoff(8)
    backoff.observe(MAILBOX, 0.5, 0.0, struggling=False)
    backoff.observe(MAILBOX, 3.0, 1.0, struggling=False)  # six times: recent 1 + 0.2 * 5
    assert backoff.recent == TOLERANCE
    assert backoff.limit == 8


def test_latency_exactly_at_the_tolerance_lets_the_limit_recover() -> None:
    backoff = Backoff(8)
    backoff.observe(MAILBOX, 0.5, 0.0, struggling=False)
    backoff.observe(MAILBOX, 10.0, 1.0, struggling=True)
    assert backoff.limit == 4
    backoff.observe(MAILBOX, 3.0, 1.0 + RECOVERY, struggling=False)
    assert backoff.recent == TOLERANCE
    assert backoff.limit == 5


def test_a_mild_rise_cuts_less_than_a_failure() -> None:
    mild, failing = Backoff(8), Backoff(8)
    for backoff in (mild, failing):
        backoff.observe(MAILBOX, 0.1, 0.0, struggling=False)
        backoff.recent = TOLERANCE * 1.05
    mild.observe(MAILBOX, 0.21, 1.0, struggling=False)
    failing.observe(MAILBOX, 0.21, 1.0, struggling=True)
    assert mild.limit == 7
    assert failing.limit == 4


def test_a_call_of_no_time_at_all_teaches_a_baseline_of_zero_without_dividing_by_it() -> None:
    backoff = Backoff(8)
    backoff.observe(MAILBOX, 0.0, 0.0, struggling=False)
    backoff.observe(MAILBOX, 0.5, 1.0, struggling=False)
    assert backoff.recent == 1.0
    assert backoff.limit == 8


def test_trouble_at_a_limit_of_one_puts_the_recovery_off() -> None:
    backoff = Backoff(2)
    backoff.observe(MAILBOX, 0.1, 0.0, struggling=False)
    backoff.observe(MAILBOX, 10.0, 1.0, struggling=True)
    assert backoff.limit == 1
    # Still failing now and then at the floor: each trouble restarts the wait.
    for now in (4.0, 7.0, 10.0):
        backoff.observe(MAILBOX, 10.0, now, struggling=True)
    backoff.observe(MAILBOX, 0.1, 10.0 + RECOVERY - 0.5, struggling=False)
    assert backoff.limit == 1
    backoff.observe(MAILBOX, 0.1, 10.0 + RECOVERY, struggling=False)
    assert backoff.limit == 2


def test_a_clock_that_goes_back_does_not_move_the_fill_back() -> None:
    budget = Budget(1.0)
    budget.charge(BURST, 10.0)
    budget.allows(5.0)
    # Back at 10: nothing was earned between 5 and 10 twice.
    assert not budget.allows(10.0)
    assert budget.balance == pytest.approx(0.0)


def test_a_new_pace_has_no_refresh_running() -> None:
    pace = Pace(1.0, 1)
    assert pace.refreshing == 0
    assert pace.refresh_allowed(0.0)


def test_the_pace_tells_the_back_off_each_function_and_each_failure() -> None:
    pace = Pace(1.0, 8)
    now = 0.0
    while now < 30.0:
        pace.ended(MAILBOX, 0.0, 0.1, now, struggling=False)
        pace.ended("listaccts", 0.0, 3.0, now + 0.05, struggling=False)
        now += 0.1
    assert pace.backoff.limit == 8
    # A quick 503: the failure alone cuts, not its latency.
    pace.ended(MAILBOX, 0.0, 0.1, now, struggling=True)
    assert pace.backoff.limit == 4
