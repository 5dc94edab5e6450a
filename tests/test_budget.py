"""The load budget and the back-off of one WHM server, with a fake clock: what each call is
charged, when refreshing may go, how far the debt goes, when concurrency drops and comes back."""

from __future__ import annotations

import math

import pytest

from whm_exporter.collect.budget import (
    BURST,
    COOLDOWN,
    RECOVERY,
    SAMPLES,
    TOLERANCE,
    WINDOW,
    WINDOW_SECONDS,
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


def test_a_follow_up_call_counts_its_own_item_among_the_refreshes_in_flight() -> None:
    pace = Pace(100.0, 2)
    pace.refreshing = 2
    assert pace.follow_up_allowed(0.0)
    pace.refreshing = 3
    assert not pace.follow_up_allowed(0.0)
    pace.refreshing = 1
    pace.budget.charge(BURST * 100.0 + 1.0, 0.0)
    assert not pace.follow_up_allowed(0.0)
    assert pace.follow_up_allowed(0.02)
    # Without a budget nothing holds it.
    free = Pace(0.0, 1)
    free.refreshing = 5
    assert free.follow_up_allowed(0.0)


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


def steady(
    backoff: Backoff, seconds: float, start: float, end: float, step: float = 0.1, fn: str = MAILBOX
) -> float:
    """Calls of ``seconds`` each, one every ``step``, from ``start`` to ``end``."""
    now = start
    while now < end:
        backoff.observe(fn, seconds, now, struggling=False)
        now += step
    return now


def learned(ceiling: int = 8, seconds: float = 0.1) -> tuple[Backoff, float]:
    """A back-off that knows the mailbox calls' usual time, and the time it is then."""
    backoff = Backoff(ceiling)
    now = steady(backoff, seconds, 0.0, SAMPLES * 0.1)
    assert backoff.baseline(MAILBOX) == seconds
    return backoff, now


def test_the_first_baseline_is_the_median_of_the_first_calls() -> None:
    backoff = Backoff(8)
    for i, seconds in enumerate((0.02, 0.1, 0.11, 0.09, 0.1)):
        assert backoff.baseline(MAILBOX) is None
        backoff.observe(MAILBOX, seconds, i * 0.1, struggling=False)
    # One quick first draw is not the norm that every later call would exceed.
    assert backoff.baseline(MAILBOX) == 0.1


def test_latency_well_above_its_baseline_for_a_window_lowers_the_limit() -> None:
    backoff, now = learned()
    now = steady(backoff, 0.1, now, now + 30.0)
    assert backoff.limit == 8
    # Four times slower for two windows (the first may hold faster calls too): the median is
    # far past the tolerance, cut by half.
    steady(backoff, 0.4, now, now + 2 * WINDOW_SECONDS + 0.25)
    assert backoff.recent > TOLERANCE
    assert backoff.limit == 4


def test_a_few_slow_calls_in_a_window_move_nothing() -> None:
    backoff, now = learned()
    # This process stalled: three calls of a window of fifty came back ten times late.
    end = now + WINDOW_SECONDS + 0.1
    while now < end:
        slow = int(now * 10) % 17 == 0
        backoff.observe(MAILBOX, 1.0 if slow else 0.1, now, struggling=False)
        now += 0.1
    assert backoff.recent < TOLERANCE
    assert backoff.limit == 8


def test_a_window_needs_enough_calls_to_judge() -> None:
    backoff, now = learned()
    # Four slow calls over a long while: too few to say anything.
    for i in range(SAMPLES - 1):
        backoff.observe(MAILBOX, 1.0, now + 10.0 * i, struggling=False)
    assert backoff.limit == 8
    backoff.observe(MAILBOX, 1.0, now + 50.0, struggling=False)
    assert backoff.limit == 4


def test_latency_within_the_tolerance_keeps_the_limit() -> None:
    backoff, now = learned()
    steady(backoff, 0.1 * TOLERANCE * 0.9, now, now + 60.0)
    assert backoff.limit == 8


def test_the_limit_drops_at_once_on_failures_once_per_cooldown_and_never_below_one() -> None:
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
    steady(backoff, 0.1, 1.0, 1.0 + SAMPLES * 0.1)
    assert backoff.baseline(MAILBOX) == 0.1


def test_the_limit_recovers_one_step_per_recovery_period_while_well() -> None:
    backoff, now = learned()
    backoff.observe(MAILBOX, 10.0, now, struggling=True)
    backoff.observe(MAILBOX, 10.0, now + COOLDOWN, struggling=True)
    assert backoff.limit == 2
    cut = now + COOLDOWN
    # Well again: one more call in flight per RECOVERY seconds, not all at once.
    steady(backoff, 0.1, cut + 0.1, cut + RECOVERY - 0.05)
    assert backoff.limit == 2
    steady(backoff, 0.1, cut + RECOVERY - 0.05, cut + RECOVERY + 0.15)
    assert backoff.limit == 3
    steady(backoff, 0.1, cut + RECOVERY + 0.15, cut + 10 * RECOVERY)
    assert backoff.limit == 8


def test_a_slow_down_does_not_become_the_baseline_at_once() -> None:
    backoff, now = learned()
    now = steady(backoff, 0.1, now, now + 60.0)
    now = steady(backoff, 0.4, now, now + 30.0)
    baseline = backoff.baseline(MAILBOX)
    assert baseline is not None
    # Thirty seconds of 4x: the baseline moved, but by far less than the slow-down.
    assert 0.1 < baseline < 0.1 * 1.2


def test_a_lasting_change_becomes_the_baseline_in_time() -> None:
    backoff, now = learned()
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


def window_of(backoff: Backoff, seconds: float, now: float) -> float:
    """One window's worth of calls of ``seconds``; the time after it."""
    return steady(backoff, seconds, now, now + WINDOW_SECONDS + 0.25)


def test_calls_at_the_tolerance_let_the_limit_recover() -> None:
    backoff, now = learned(seconds=0.5)
    backoff.observe(MAILBOX, 10.0, now, struggling=True)
    assert backoff.limit == 4
    # Twice the usual time (the baseline creeps up meanwhile): not over it, so well.
    window_of(backoff, 0.5 * TOLERANCE, now + RECOVERY)
    assert backoff.recent == pytest.approx(TOLERANCE, rel=0.02)
    assert backoff.limit == 5


def test_a_mild_rise_cuts_less_than_a_failure() -> None:
    mild, now = learned()
    window_of(mild, 0.1 * TOLERANCE * 1.05, now)
    failing, now = learned()
    failing.observe(MAILBOX, 0.21, now, struggling=True)
    assert mild.limit == 7
    assert failing.limit == 4


def test_calls_of_no_time_at_all_teach_a_baseline_of_zero_without_dividing_by_it() -> None:
    backoff, now = learned(seconds=0.0)
    window_of(backoff, 0.5, now)
    assert backoff.recent == 1.0
    assert backoff.limit == 8


def test_trouble_at_a_limit_of_one_puts_the_recovery_off() -> None:
    backoff, now = learned(ceiling=2)
    backoff.observe(MAILBOX, 10.0, now, struggling=True)
    assert backoff.limit == 1
    # Still failing now and then at the floor: each trouble restarts the wait.
    last = now
    for k in (1, 2, 3):
        last = now + k * (COOLDOWN + 0.5)
        backoff.observe(MAILBOX, 10.0, last, struggling=True)
    steady(backoff, 0.1, last + 0.1, last + RECOVERY - 0.2)
    assert backoff.limit == 1
    steady(backoff, 0.1, last + RECOVERY - 0.2, last + RECOVERY + WINDOW_SECONDS + 0.2)
    assert backoff.limit == 2


def test_without_a_budget_nothing_is_held_back() -> None:
    pace = Pace(0.0, 8)
    pace.backoff.limit = 1
    pace.refreshing = 8
    assert pace.refresh_allowed(0.0)
    assert pace.concurrency() == 8


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


def test_the_spam_signal_load_is_its_time_over_about_a_window() -> None:
    pace = Pace(1.0, 8)
    assert pace.signal_load(0.0) == 0.0
    pace.ended(MAILBOX, 0.0, 6.0, 0.0, struggling=False)  # a refresh: not the signal's
    assert pace.signal_load(0.0) == 0.0
    pace.ended(
        "get_unique_sender_recipient_count_per_user", 0.0, 6.0, 0.0, struggling=False, signal=True
    )
    assert pace.signal_load(0.0) == pytest.approx(6.0 / WINDOW)
    pace.ended("emailtrack_user_stats", 0.0, 6.0, 0.0, struggling=False, signal=True)
    assert pace.signal_load(0.0) == pytest.approx(12.0 / WINDOW)
    # It fades: after a window, to a third or so.
    assert pace.signal_load(WINDOW) == pytest.approx(12.0 / WINDOW / math.e)


def seeded(at: float = 0.0) -> Backoff:
    """A back-off whose mailbox calls usually take 1 s, learned from calls all at ``at``."""
    backoff = Backoff(8)
    for _ in range(SAMPLES):
        backoff.observe(MAILBOX, 1.0, at, struggling=False)
    assert backoff.baseline(MAILBOX) == 1.0
    return backoff


def calls(backoff: Backoff, seconds: float, *times: float) -> None:
    for now in times:
        backoff.observe(MAILBOX, seconds, now, struggling=False)


def test_a_window_is_judged_once_it_spans_its_seconds_and_the_next_starts_then() -> None:
    backoff = seeded()
    calls(backoff, 1.0, 10.0, 11.0, 12.0, 13.0)
    calls(backoff, 1.0, 10.0 + WINDOW_SECONDS)  # five calls over exactly WINDOW_SECONDS
    assert backoff.limit == 8
    # The next window began when the last was judged (15 s), not at its first call (19 s).
    calls(backoff, 4.0, 19.0, 20.0, 21.0, 22.0)
    assert backoff.limit == 8
    calls(backoff, 4.0, 23.0)
    assert backoff.limit == 4


def test_a_window_at_exactly_the_tolerance_is_well() -> None:
    # Calls at the baseline's own moment leave it where it is: every ratio is exactly 2.
    backoff = seeded(at=10.0)
    backoff.observe(MAILBOX, 30.0, 10.0, struggling=True)
    assert backoff.limit == 4
    calls(backoff, 2.0, 10.0, 10.0, 10.0, 10.0, 10.0 + RECOVERY)
    assert backoff.recent == TOLERANCE
    assert backoff.limit == 5


def test_the_recovery_waits_its_period_after_a_cut_even_within_a_window() -> None:
    backoff = seeded()
    backoff.observe(MAILBOX, 30.0, 10.0, struggling=True)
    assert backoff.limit == 4
    # A well window judged exactly RECOVERY after the cut: one step up.
    calls(backoff, 1.0, 10.0, 11.0, 12.0, 13.0, 15.0)
    assert backoff.limit == 5
    calls(backoff, 1.0, 16.0, 17.0, 18.0, 19.0)
    backoff.observe(MAILBOX, 30.0, 19.5, struggling=True)
    assert backoff.limit == 2
    # The window under way when WHM failed ends well half a second later: no step up yet.
    calls(backoff, 1.0, 20.0)
    assert backoff.recent == pytest.approx(1.0, rel=0.01)
    assert backoff.limit == 2
