"""The load budget end to end, against the simulator on loopback: refreshes wait for it and resume
when it allows, the spam signal and a first pass never wait, one budget per server, and the
budget on /metrics. (The accounting and the back-off themselves: tests/test_budget.py, with a
fake clock; the load they keep: benchmarks/freshness.py.)"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from conftest import WHM, module, samples, series, value, wait_until

from whm_exporter.collect.run import Bound
from whm_exporter.collect.state import Addresses, Kept
from whm_exporter.config import build_config
from whm_exporter.probe import snapshot
from whm_exporter.simulator import Dataset
from whm_exporter.target import Target
from whm_exporter.whm.parse import Account
from whm_exporter.yamlconf import ConfigError

DATASET = Dataset(accounts=40, users=8, folders=3)
MAILBOX = "get_mailbox_status_list"
SENDERS = "get_unique_recipient_count_per_sender_for_user"
TOTALS = "get_unique_sender_recipient_count_per_user"
ACCOUNTS = sum(len(DATASET.pops[u]) + 1 for u in DATASET.user_names if not DATASET.suspended(u))


def budget_module(url: str, budget: float, **overrides: Any) -> dict[str, Any]:
    # Every mailbox may be asked again at once: only the budget holds the refreshes back.
    return module(url, load_budget=budget, mailboxes={"refresh": "0s"}, **overrides)


async def test_after_a_first_pass_refreshes_wait_for_the_budget(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET, latency=0.01)
    # 0.001 s of WHM time a second: the first pass (about 0.5 s of it) leaves a debt of a
    # minute's worth, so no refresh may go for a minute.
    running = await start_exporter(budget_module(whm.url, 0.001))
    first = await running.probe()
    assert value(first, "whm_data_items", function=MAILBOX, state="fresh") == ACCOUNTS
    mailboxes = whm.sim.stats.calls[MAILBOX]
    totals = whm.sim.stats.calls[TOTALS]
    second = await running.probe()
    # The spam signal again, no mailbox: all kept, all served, the work still pending.
    assert whm.sim.stats.calls[TOTALS] == totals + 1
    assert whm.sim.stats.calls[MAILBOX] == mailboxes
    assert value(second, "whm_data_items", function=MAILBOX, state="kept") == ACCOUNTS
    assert value(second, "whm_probe_deadline_exceeded") == 1


async def test_without_a_budget_every_refresh_goes_at_once(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET, latency=0.01)
    running = await start_exporter(budget_module(whm.url, 0))
    await running.probe()
    mailboxes = whm.sim.stats.calls[MAILBOX]
    second = await running.probe()
    assert whm.sim.stats.calls[MAILBOX] == 2 * mailboxes
    assert value(second, "whm_data_items", function=MAILBOX, state="fresh") == ACCOUNTS
    assert value(second, "whm_probe_deadline_exceeded") == 0


async def test_refreshes_resume_when_the_budget_allows(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET, latency=0.02)
    # About a second of WHM time for the first pass against 1 s of savings: a short debt, then
    # refreshing at a fifth of a call in flight.
    running = await start_exporter(budget_module(whm.url, 0.2, max_concurrency=4))
    await running.probe()
    mailboxes = whm.sim.stats.calls[MAILBOX]
    await running.probe()
    # Nobody probes now; the collection goes on (within twice the scrape interval) as the budget
    # fills, one refresh after another.
    await wait_until(
        lambda: whm.sim.stats.calls[MAILBOX] >= mailboxes + 5, "refreshes within the budget"
    )
    # Refreshing runs one call at a time at this budget, never at the bound's size.
    assert whm.sim.stats.in_flight <= 1


async def test_the_spam_signal_never_waits_for_the_budget(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET, latency=0.01)
    running = await start_exporter(budget_module(whm.url, 0.001))
    await running.probe()
    spammer = whm.sim.quiet_address()
    whm.sim.start_spammer(spammer, 5000)
    found = await running.probe()
    # In debt for a minute, yet the totals showed a hot user and its senders were asked.
    senders = {
        dict(k)["sender"]: v for k, v in series(found, "whm_sender_unique_recipients").items()
    }
    assert senders[spammer] == 5000


async def test_one_budget_per_server_the_smallest_that_is_set(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET)
    document = {
        "modules": {
            "a": {"token": "x", "load_budget": 2.0},
            "b": {"token": "x", "load_budget": 0.5},
            "none": {"token": "x", "load_budget": 0},
        },
        "targets": {
            "one": {"url": whm.url, "module": "a"},
            "two": {"url": whm.url + "/", "module": "b"},
            "three": {"url": whm.url, "module": "none"},
            "other": {"url": "http://127.0.0.2:2086", "module": "none"},
        },
    }
    running = await start_exporter(document)
    targets = running.exporter.targets
    assert targets["one"].bound is targets["two"].bound is targets["three"].bound
    assert targets["one"].bound.pace.budget.rate == 0.5
    status, text = await running.get("/metrics")
    assert status == 200
    budgets = {
        dict(k)["target"]: v for k, v in series(samples(text), "whm_exporter_load_budget").items()
    }
    assert budgets == {"one": 0.5, "two": 0.5, "three": 0.5, "other": 0.0}


def test_a_negative_or_endless_budget_is_refused_with_what_it_means() -> None:
    for bad in (-1, "inf", "nan", "lots"):
        try:
            build_config({"modules": {"m": {"token": "x", "load_budget": bad}}}, {})
        except ConfigError as err:
            [problem] = err.problems
            assert problem.startswith("modules.m.load_budget: ")
            if bad != "lots":
                assert "seconds of WHM time per second" in problem
                assert "0 = no budget" in problem
        else:
            raise AssertionError(f"load_budget {bad!r} was accepted")


async def test_the_log_says_once_when_the_budget_cannot_keep_mailboxes_within_max_age(
    start_whm, start_exporter, caplog
) -> None:
    whm: WHM = await start_whm(DATASET, latency=0.01)
    # About 0.4 s of WHM time a pass at 0.01 s of it per second: 40 s, past a max_age of 20 s.
    document = module(whm.url, load_budget=0.01, mailboxes={"max_age": "20s"})
    running = await start_exporter(document)
    with caplog.at_level(logging.WARNING, logger="whm_exporter.probe"):
        await running.probe()
        await running.probe()
    said = [r for r in caplog.records if "load budget" in r.getMessage()]
    assert len(said) == 1
    fields = said[0].__dict__
    assert fields["target"] == "t"
    assert fields["load_budget"] == 0.01
    assert fields["pass_seconds"] > 20
    # The budget that would do: the pass's WHM time over max_age, rounded up.
    assert fields["load_budget_needed"] >= fields["pass_seconds"] * 0.01 / 20


async def test_no_budget_warning_when_the_pass_fits_or_there_is_no_budget(
    start_whm, start_exporter, caplog
) -> None:
    whm: WHM = await start_whm(DATASET, latency=0.01)
    with caplog.at_level(logging.WARNING, logger="whm_exporter.probe"):
        for budget in (1.0, 0):
            running = await start_exporter(
                module(whm.url, load_budget=budget, mailboxes={"max_age": "20s"})
            )
            await running.probe()
    assert not [r for r in caplog.records if "load budget" in r.getMessage()]


async def test_5xx_answers_make_refreshing_back_off_and_api_errors_do_not(
    start_whm, start_exporter
) -> None:
    for fault, backs_off in (("http500", True), ("api_error", False), ("http401", False)):
        whm: WHM = await start_whm(DATASET, faults={MAILBOX: fault})
        running = await start_exporter(module(whm.url, max_concurrency=8))
        await running.probe()
        limit = running.exporter.targets["t"].bound.pace.backoff.limit
        assert (limit < 8) is backs_off, fault


def target_with_mailboxes(budget: float, answered_at: float) -> Target:
    """A target (never connected) whose 3 users and 7 mailboxes are known, the mailboxes
    answered at ``answered_at``, and whose server's calls take 0.1 s."""
    document = {"modules": {"default": {"token": "x", "mailboxes": {"max_age": "100s"}}}}
    config = build_config(document, {}).config
    bound = Bound(8, budget)
    target = Target("t", "https://whm.example", config.modules["default"], {}, bound)
    state = target.state
    state.new_epoch(0.0)
    assert state.listaccts is not None
    users = {u: Account(u, suspended=False) for u in ("alice", "bob", "carol")}
    state.start(state.listaccts, 0.0, urgent=False)
    state.answered(state.listaccts, users, 0.0)
    state.finish(state.listaccts, True)
    for user, pops in state.pops.items():
        state.start(pops, 0.0, urgent=False)
        state.answered(pops, Addresses((f"{user}@x",)), 0.0)
        state.finish(pops, True)
    for item in state.mailboxes.values():
        state.start(item, answered_at, urgent=False)
        state.answered(item, Kept(()), answered_at)
        state.finish(item, True)
    for function in (MAILBOX, "list_pops_for"):
        bound.pace.call_seconds[function] = 0.1
    return target


def budget_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "load budget" in r.getMessage()]


def test_the_budget_warning_counts_what_the_spam_signal_leaves(caplog) -> None:
    target = target_with_mailboxes(1.0, 0.0)
    found = snapshot(target.state, 10.0, 0.1, 10.0, pending=False)
    with caplog.at_level(logging.INFO, logger="whm_exporter.probe"):
        target.advice.load_budget(target, found, 10.0)
        assert not budget_warnings(caplog)
        # The spam signal took a whole minute of WHM time in the last one: nothing is left.
        target.bound.pace.ended(TOTALS, 0.0, 60.0, 10.0, struggling=False, signal=True)
        target.advice.load_budget(target, found, 10.0)
        [said] = budget_warnings(caplog)
    fields = said.__dict__
    assert fields["spam_signal_load"] == 1.0
    assert fields["pass_seconds"] == "never"
    # A second load budget for the signal, and 1 s of a pass within 75 s.
    assert fields["load_budget_needed"] == 1.1


def warn_at(target: Target, now: float) -> None:
    target.advice.load_budget(target, snapshot(target.state, now, 0.1, 10, pending=False), now)


def test_the_budget_warning_comes_when_mailboxes_pass_three_quarters_of_max_age(caplog) -> None:
    target = target_with_mailboxes(1.0, 0.0)
    with caplog.at_level(logging.INFO, logger="whm_exporter.probe"):
        warn_at(target, 70.0)
        assert not budget_warnings(caplog)
        warn_at(target, 80.0)
        [said] = budget_warnings(caplog)
        assert said.__dict__["oldest_mailbox_seconds"] == 80
        # Refreshed: within it again, said once at info.
        again = target_with_mailboxes(1.0, 79.0)
        again.advice.over_budget = True
        warn_at(again, 80.0)
    assert "within max_age again" in caplog.records[-1].getMessage()
