"""What a probe serves of a target's state (probe.snapshot) with a fake clock: kept answers
until their max_age, the item counts, the log lines of slow passes, and the cPanel limit
flags."""

from __future__ import annotations

import logging

import pytest
from statekit import answer, discovered, fail, state_for

from whm_exporter.advice import Advice
from whm_exporter.collect.state import Kept
from whm_exporter.probe import snapshot
from whm_exporter.whm import parse


def test_snapshot_serves_kept_answers_until_max_age_and_counts_items() -> None:
    state = state_for(mailboxes={"max_age": "10m"}, unique_recipients={"enabled": False})
    discovered(state, 0.0)
    state.new_epoch(0.0)
    for item in state.mailboxes.values():
        answer(state, item, Kept(()), 100.0 if item.user == "alice" else 10.0)
    state.new_epoch(200.0)
    mailbox_items = state.mailboxes.values()
    # Answered since the previous scrape (at 0.0): fresh.
    advice = Advice()
    first = snapshot(state, 300.0, 0.1, 10.0, pending=False)
    advice.slow_pass("t", first.expired)
    assert first.items[("get_mailbox_status_list", "fresh")] == len(mailbox_items)
    assert first.data_age["get_mailbox_status_list"] == 290.0
    assert not advice.slow
    state.new_epoch(650.0)
    later = snapshot(state, 650.0, 0.1, 10.0, pending=False)
    advice.slow_pass("t", later.expired)
    alice = sum(1 for i in mailbox_items if i.user == "alice")
    # Answers from 10.0 are 640 s old at 650: past max_age (600 s), no longer served.
    assert later.items[("get_mailbox_status_list", "missing")] == len(mailbox_items) - alice
    assert later.items[("get_mailbox_status_list", "kept")] == alice
    assert later.items[("get_mailbox_status_list", "fresh")] == 0
    assert later.data_age["get_mailbox_status_list"] == 550.0
    assert advice.slow


def test_slow_passes_are_logged_once_and_their_recovery_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = state_for(mailboxes={"max_age": "10m"}, unique_recipients={"enabled": False})
    discovered(state, 0.0)
    for item in state.mailboxes.values():
        answer(state, item, Kept(()), 10.0)
    advice = Advice()

    def probe_at(now: float) -> None:
        advice.slow_pass("t", snapshot(state, now, 0.1, 10.0, pending=False).expired)

    with caplog.at_level(logging.INFO, logger="whm_exporter.probe"):
        probe_at(100.0)
        assert not caplog.records
        probe_at(700.0)
        probe_at(701.0)
        assert [r.levelname for r in caplog.records] == ["WARNING"]
        assert "max_concurrency" in caplog.records[0].getMessage()
        for item in state.mailboxes.values():
            answer(state, item, Kept(()), 702.0)
        probe_at(703.0)
        assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]
        # An answer that outlives max_age because WHM refuses to renew it is no slow pass.
        caplog.clear()
        fail(state, next(iter(state.mailboxes.values())), 800.0)
        probe_at(1400.0)
        assert [r.levelname for r in caplog.records] == ["WARNING"]
        assert advice.slow
        for item in list(state.mailboxes.values())[1:]:
            answer(state, item, Kept(()), 1401.0)
        probe_at(1402.0)
        assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]


def test_cpanel_limit_flags_come_from_the_shortest_window_alone() -> None:
    # cPanel's limits are per hour (emailtrack_user_stats: REACHED_MAXEMAILS per hour): a limit
    # a longer window saw tripped must not stay "reached" for the rest of that window.
    state = state_for(mail_flow={"windows": ["1d", "1h"]})
    discovered(state, 1.0)

    def flow(user: str, emails: bool, defer_fail: bool) -> parse.MailFlow:
        return parse.MailFlow(user, 10, 10, 0, 0, 0, 1, emails, defer_fail)

    day = {"alice": flow("alice", True, True), "bob": flow("bob", True, False)}
    answer(state, state.mail_flow["1d"], day, 2.0)

    def flags(now: float) -> dict[tuple[str, str], bool]:
        found = snapshot(state, now, 0.1, 10.0, pending=False)
        return {(s.user, s.limit): s.reached for s in found.limits}

    # Without the hour's answer nothing tells whether a limit holds now: no flags at all.
    assert flags(3.0) == {}
    answer(state, state.mail_flow["1h"], {"bob": flow("bob", False, True)}, 4.0)
    assert flags(5.0) == {
        ("alice", "max_emails_per_hour"): False,
        ("alice", "max_defer_fail"): False,
        ("bob", "max_emails_per_hour"): False,
        ("bob", "max_defer_fail"): True,
    }
