"""The scheduler and the state it reads, with a fake clock: which call comes next, when an item
may be asked again, when a probe may answer, and how discovery adds and drops items."""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest
from conftest import loaded

from whm_exporter.collect import schedule
from whm_exporter.collect.calls import MAILBOX_LIST, plan, time_range
from whm_exporter.collect.state import Addresses, Item, Kept, Kind, Stage, TargetState
from whm_exporter.probe import snapshot
from whm_exporter.snapshot import CallRecord
from whm_exporter.whm import parse
from whm_exporter.whm.parse import Account

FLOW = "emailtrack_user_stats"
USERS = {u: Account(u, suspended=False) for u in ("alice", "bob", "carol")}
POPS = {"alice": ("a1@x", "a2@x"), "bob": ("b1@x",), "carol": ("c1@x",)}
# Per-user totals in which every user sends a little: none of them is hot, and no breakdown is
# known from the totals alone (a user absent from them sent nothing: see the tests of _confirm).
SENDING = {"alice": 5, "bob": 3, "carol": 2}


def state_for(
    explicit: dict[str, tuple[str, ...]] | None = None, *, learned: bool = True, **module: Any
) -> TargetState:
    """A target's state; ``learned``: the mailbox function is known (no one-at-a-time start).
    Mail flow is off unless asked: most of these tests are about the other items."""
    module.setdefault("mail_flow", {"enabled": False})
    document = {"modules": {"default": {"token": "x", **module}}}
    config = loaded(document).config
    state = TargetState(config.modules["default"], explicit or {})
    if learned:
        state.mailbox_function = MAILBOX_LIST
    return state


def answer(state: TargetState, item: Item[Any], value: Any, now: float) -> None:
    if not item.in_flight:
        state.start(item, now, urgent=False)
    state.answered(item, value, now)
    state.finish(item, True)


def fail(state: TargetState, item: Item[Any], now: float) -> None:
    state.start(item, now, urgent=False)
    state.finish(item, False)


def discovered(state: TargetState, now: float, pops: dict[str, tuple[str, ...]] = POPS) -> None:
    """listaccts and every list_pops_for answered at ``now``."""
    assert state.listaccts is not None
    answer(state, state.listaccts, dict(USERS), now)
    for user, addresses in pops.items():
        answer(state, state.pops[user], Addresses(addresses), now)


def order(state: TargetState, now: float, refresh: dict[Kind, float]) -> list[tuple[str, str, str]]:
    """Every item the schedule hands out, in order, as if each call were started at once."""
    out = []
    while (picked := schedule.next_item(state, now, refresh)) is not None:
        item, _ = picked
        state.start(item, now, urgent=False)
        out.append((item.kind.name, item.user, item.subject))
    return out


def test_totals_come_first_then_discovery() -> None:
    state = state_for()
    state.new_epoch(0.0)
    refresh = schedule.refresh_of(state.module)
    item, urgent = schedule.next_item(state, 1.0, refresh) or (None, False)
    assert item is not None
    assert (item.kind, urgent) == (Kind.TOTALS, True)
    state.start(item, 1.0, urgent=True)
    item, urgent = schedule.next_item(state, 1.0, refresh) or (None, False)
    assert item is not None
    assert (item.kind, urgent) == (Kind.LISTACCTS, False)


def test_first_pass_is_discovery_then_mailboxes_then_quiet_senders() -> None:
    state = state_for()
    discovered(state, 1.0)
    totals = state.totals["1h"]
    answer(state, totals, {"alice": 5}, 2.0)
    state.new_epoch(3.0)
    got = order(state, 4.0, schedule.refresh_of(state.module))
    mailboxes = [k for k in got if k[0] == "MAILBOX"]
    senders = [k for k in got if k[0] == "SENDERS"]
    # The totals again (refresh 0s): the spam signal leads every probe.
    assert got == [("TOTALS", "", "1h"), *mailboxes, *senders]
    assert {m[2] for m in mailboxes} == {"a1@x", "a2@x", "b1@x", "c1@x", "alice", "bob", "carol"}
    # bob and carol sent to nobody (absent from the totals): nothing to ask them.
    assert {s[1] for s in senders} == {"alice"}
    assert state.senders[("bob", "1h")].answer == Kept(())


def test_hot_users_senders_rank_above_everything_never_fetched_biggest_first() -> None:
    state = state_for()
    discovered(state, 1.0)
    state.new_epoch(2.0)
    # carol at the threshold (100) counts as hot, bob above it goes first, alice is quiet.
    answer(state, state.totals["1h"], {"alice": 99, "bob": 700, "carol": 100}, 3.0)
    got = order(state, 4.0, schedule.refresh_of(state.module))
    assert got[:2] == [("SENDERS", "bob", "1h"), ("SENDERS", "carol", "1h")]
    assert got.index(("SENDERS", "alice", "1h")) > got.index(("MAILBOX", "alice", "a1@x"))


def test_a_breakdown_newer_than_the_total_is_not_asked_first() -> None:
    state = state_for()
    discovered(state, 1.0)
    answer(state, state.totals["1h"], {"bob": 700}, 2.0)
    answer(state, state.senders[("bob", "1h")], Kept(()), 3.0)
    state.new_epoch(4.0)
    # The same total again: bob's breakdown (3.0) is older than this one (5.0), so it is hot.
    answer(state, state.totals["1h"], {"bob": 700}, 5.0)
    assert order(state, 5.0, schedule.refresh_of(state.module))[0] == ("SENDERS", "bob", "1h")
    state2 = state_for()
    discovered(state2, 1.0)
    state2.new_epoch(2.0)
    answer(state2, state2.senders[("bob", "1h")], Kept(()), 3.0)
    answer(state2, state2.totals["1h"], {"bob": 700}, 2.5)
    # Totals from 2.5, breakdown from 3.0: nothing older than the signal, nothing hot.
    assert not state2.hot


def test_without_totals_every_sender_ranks_above_discovery_and_mailboxes() -> None:
    state = state_for(unique_recipients={"per_user_totals": False})
    discovered(state, 1.0)
    state.new_epoch(2.0)
    got = order(state, 3.0, schedule.refresh_of(state.module))
    assert [k[0] for k in got[:3]] == ["SENDERS"] * 3
    assert all(k[0] == "MAILBOX" for k in got[3:])


def test_failing_totals_put_the_senders_first_too() -> None:
    state = state_for()
    discovered(state, 1.0)
    state.new_epoch(2.0)
    fail(state, state.totals["1h"], 2.5)
    picked = schedule.next_item(state, 3.0, schedule.refresh_of(state.module))
    assert picked is not None
    assert (picked[0].kind, picked[1]) == (Kind.SENDERS, True)


def test_an_item_is_asked_once_between_two_probes_whatever_its_refresh() -> None:
    state = state_for(mailboxes={"refresh": "0s"}, unique_recipients={"enabled": False})
    discovered(state, 1.0)
    refresh = schedule.refresh_of(state.module)
    state.new_epoch(2.0)
    first = order(state, 3.0, refresh)
    assert first
    for _kind, user, subject in first:
        answer(state, state.mailboxes[(user, subject)], Kept(()), 3.0)
    assert schedule.next_item(state, 50.0, refresh) is None
    state.new_epoch(60.0)
    assert sorted(order(state, 61.0, refresh)) == sorted(first)


def test_an_answer_younger_than_refresh_is_not_asked_again() -> None:
    state = state_for(unique_recipients={"enabled": False})  # mailboxes: refresh 1m
    discovered(state, 1.0)
    mailbox = state.mailboxes[("bob", "b1@x")]
    answer(state, mailbox, Kept(()), 10.0)
    refresh = schedule.refresh_of(state.module)
    state.new_epoch(40.0)
    found = schedule.next_item(state, 40.0, refresh)
    assert found is None or found[0] is not mailbox
    assert ("MAILBOX", "bob", "b1@x") not in order(state, 40.0, refresh)
    state.new_epoch(71.0)
    assert ("MAILBOX", "bob", "b1@x") in order(state, 71.0, refresh)


def test_everything_else_goes_oldest_first_across_functions() -> None:
    state = state_for(mailboxes={"refresh": "0s"}, discovery={"refresh": "0s"})
    discovered(state, 1.0)
    answer(state, state.totals["1h"], {}, 1.0)
    # Lanes keep the order in which calls ended: answers here end in a mixed order of kinds.
    items = [*state.mailboxes.values(), *state.senders.values()]
    for t, item in enumerate(sorted(items, key=lambda i: (i.subject, i.user))):
        answer(state, item, Kept(()), 10.0 + t)
    state.new_epoch(200.0)
    got = order(state, 200.0, schedule.refresh_of(state.module))
    assert got[0] == ("TOTALS", "", "1h")
    # Discovery answered at 1.0 is the oldest, then everything by the age of its answer.
    ages = {
        (i.kind.name, i.user, i.subject): i.answered_at
        for i in [*state.pops.values(), *state.mailboxes.values(), *state.senders.values()]
    }
    ages[("LISTACCTS", "", "")] = 1.0
    rest = got[1:]
    assert [ages[k] for k in rest] == sorted(ages[k] for k in rest)


def test_failed_items_are_retried_after_new_ones_and_once_per_probe() -> None:
    state = state_for(unique_recipients={"enabled": False})
    discovered(state, 1.0)
    refresh = schedule.refresh_of(state.module)
    state.new_epoch(2.0)
    broken = state.mailboxes[("alice", "a1@x")]
    fail(state, broken, 2.0)
    assert broken.lane is state.lanes[(Kind.MAILBOX, Stage.FAILED)]
    assert ("MAILBOX", "alice", "a1@x") not in order(state, 3.0, refresh)
    state2 = state_for(unique_recipients={"enabled": False})
    discovered(state2, 1.0)
    fail(state2, state2.mailboxes[("alice", "a1@x")], 1.5)
    state2.new_epoch(2.0)
    assert order(state2, 3.0, refresh)[-1] == ("MAILBOX", "alice", "a1@x")


def test_one_mailbox_call_at_a_time_until_the_function_is_known() -> None:
    state = state_for(unique_recipients={"enabled": False}, learned=False)
    discovered(state, 1.0)
    state.new_epoch(2.0)
    refresh = schedule.refresh_of(state.module)
    assert [k[0] for k in order(state, 3.0, refresh)] == ["MAILBOX"]
    learned = state_for(unique_recipients={"enabled": False})
    learned.mailbox_function = "get_mailbox_status"
    discovered(learned, 1.0)
    learned.new_epoch(2.0)
    assert len(order(learned, 3.0, refresh)) == 7


def test_while_the_mailbox_function_is_learned_the_other_items_go_on() -> None:
    state = state_for(learned=False)
    discovered(state, 1.0)
    state.new_epoch(2.0)
    answer(state, state.totals["1h"], SENDING, 2.5)
    refresh = schedule.refresh_of(state.module)
    got = order(state, 3.0, refresh)
    # One mailbox (the one that learns), then every user's senders, no other mailbox.
    assert got[0][0] == "MAILBOX"
    assert [k[0] for k in got[1:]] == ["SENDERS"] * 3


def test_answers_of_the_same_age_go_in_the_order_of_first_asking() -> None:
    # Ties in tier (d): discovery, then mailboxes, then senders, as tier (c) orders them.
    state = state_for(mailboxes={"refresh": "0s"})
    discovered(state, 1.0)
    answer(state, state.totals["1h"], SENDING, 1.0)
    for item in [*state.senders.values(), *state.mailboxes.values()]:
        answer(state, item, Kept(()), 1.0)
    state.new_epoch(2.0)
    refresh = schedule.refresh_of(state.module)
    # The totals of this round, changed: they vouch for nothing.
    answer(state, state.totals["1h"], {u: n + 1 for u, n in SENDING.items()}, 2.5)
    got = order(state, 3.0, refresh)
    assert [k[0] for k in got] == ["MAILBOX"] * len(state.mailboxes) + ["SENDERS"] * 3


def test_kept_senders_wait_while_the_totals_that_may_vouch_for_them_are_in_flight() -> None:
    state = state_for(mailboxes={"refresh": "0s"})
    discovered(state, 1.0)
    answer(state, state.totals["1h"], SENDING, 1.0)
    for item in [*state.senders.values(), *state.mailboxes.values()]:
        answer(state, item, Kept(()), 1.0)
    state.new_epoch(2.0)
    refresh = schedule.refresh_of(state.module)
    got = order(state, 3.0, refresh)
    assert [k[0] for k in got] == ["TOTALS"] + ["MAILBOX"] * len(state.mailboxes)


def test_kept_senders_go_while_the_totals_may_not_be_asked_yet() -> None:
    state = state_for(unique_recipients={"refresh": "30s"})
    discovered(state, 1.0)
    refresh = schedule.refresh_of(state.module)
    answer(state, state.totals["1h"], SENDING, 1.0)
    for item in state.senders.values():
        answer(state, item, Kept(()), 1.0)
    state.new_epoch(50.0)
    # The totals of 45 s may not go again before 75 s: nothing to wait for.
    answer(state, state.totals["1h"], {u: n + 1 for u, n in SENDING.items()}, 45.0)
    got = order(state, 60.0, refresh)
    assert [k[0] for k in got if k[0] == "SENDERS"] == ["SENDERS"] * 3


def test_a_probe_answers_when_the_spam_signal_is_fresh_and_the_rest_cannot_fit() -> None:
    state = state_for(unique_recipients={"priority_threshold": 100})
    discovered(state, 1.0)
    refresh = schedule.refresh_of(state.module)
    state.new_epoch(10.0)
    answer_now = schedule.answer_now
    # Totals not asked yet: never, however little time is left.
    assert not answer_now(state, 10.0, 10.0, refresh, call_seconds=0.1, concurrency=8)
    answer(state, state.totals["1h"], {**SENDING, "bob": 500}, 10.5)
    # bob is hot and his breakdown not yet asked.
    assert not answer_now(state, 10.5, 10.6, refresh, call_seconds=0.1, concurrency=8)
    answer(state, state.senders[("bob", "1h")], Kept(()), 10.6)
    # 9 items left (7 mailboxes, 2 quiet senders): at 0.1 s a call, 8 at once, 1 s fits them...
    assert not answer_now(state, 10.6, 11.6, refresh, call_seconds=0.1, concurrency=8)
    # ...0.1 s does not: answer now, the collection goes on after.
    assert answer_now(state, 10.6, 10.7, refresh, call_seconds=0.1, concurrency=8)
    # Nothing measured: wait for everything.
    assert not answer_now(state, 10.6, 10.7, refresh, call_seconds=None, concurrency=8)
    order(state, 10.7, refresh)  # every item started...
    assert not answer_now(state, 10.7, 99.0, refresh, call_seconds=0.1, concurrency=8)
    for item in [*state.mailboxes.values(), *state.senders.values()]:
        if item.in_flight:
            state.answered(item, Kept(()), 10.8)
            state.finish(item, True)
    # ...and answered: done.
    assert answer_now(state, 10.8, 99.0, refresh, call_seconds=None, concurrency=8)


def test_count_eligible_stops_at_its_limit() -> None:
    state = state_for()
    discovered(state, 1.0)
    state.new_epoch(2.0)
    refresh = schedule.refresh_of(state.module)
    everything = schedule.count_eligible(state, 2.0, refresh, 10_000)
    assert everything == 1 + 7 + 3  # totals, mailboxes, senders
    assert schedule.count_eligible(state, 2.0, refresh, 4) == 4


def test_users_and_addresses_gone_from_discovery_are_dropped_with_their_items() -> None:
    state = state_for(explicit={"dave": ("d@x",)})
    discovered(state, 1.0)
    assert ("alice", "a2@x") in state.mailboxes
    in_flight = state.mailboxes[("alice", "a1@x")]
    state.start(in_flight, 2.0, urgent=False)
    answer(state, state.pops["alice"], Addresses(("a2@x",)), 3.0)
    assert ("alice", "a1@x") not in state.mailboxes
    # The call in flight for the dropped address lands nowhere.
    state.answered(in_flight, Kept(()), 4.0)
    state.finish(in_flight, True)
    assert in_flight.lane is None
    assert in_flight.answer is None
    assert state.listaccts is not None
    answer(state, state.listaccts, {"alice": USERS["alice"]}, 5.0)
    assert set(state.accounts) == {"alice", "dave"}
    assert {k[0] for k in state.mailboxes} == {"alice", "dave"}
    assert {k[0] for k in state.senders} == {"alice", "dave"}
    assert all(item.lane is not None for item in state.mailboxes.values())
    assert_lanes_hold_only_known_items(state)


def test_listaccts_filters_suspended_and_excluded_users() -> None:
    state = state_for(discovery={"exclude_users": ["bob"]})
    assert state.listaccts is not None
    users = {**USERS, "eve": Account("eve", suspended=True)}
    answer(state, state.listaccts, users, 1.0)
    assert set(state.accounts) == {"alice", "carol"}
    # Main mailboxes are known at once; the addresses when list_pops_for answers.
    assert set(state.mailboxes) == {("alice", "alice"), ("carol", "carol")}


def test_snapshot_serves_kept_answers_until_max_age_and_counts_items() -> None:
    state = state_for(mailboxes={"max_age": "10m"}, unique_recipients={"enabled": False})
    discovered(state, 0.0)
    state.new_epoch(0.0)
    for item in state.mailboxes.values():
        answer(state, item, Kept(()), 100.0 if item.user == "alice" else 10.0)
    state.new_epoch(200.0)
    mailbox_items = state.mailboxes.values()
    # Answered since the previous scrape (at 0.0): fresh.
    first = snapshot("t", state, 300.0, 0.1, 10.0, pending=False)
    assert first.items[("get_mailbox_status_list", "fresh")] == len(mailbox_items)
    assert first.data_age["get_mailbox_status_list"] == 290.0
    assert not state.slow_warned
    state.new_epoch(650.0)
    later = snapshot("t", state, 650.0, 0.1, 10.0, pending=False)
    alice = sum(1 for i in mailbox_items if i.user == "alice")
    # Answers from 10.0 are 640 s old at 650: past max_age (600 s), no longer served.
    assert later.items[("get_mailbox_status_list", "missing")] == len(mailbox_items) - alice
    assert later.items[("get_mailbox_status_list", "kept")] == alice
    assert later.items[("get_mailbox_status_list", "fresh")] == 0
    assert later.data_age["get_mailbox_status_list"] == 550.0
    assert state.slow_warned


def test_windows_end_end_time_lag_behind_the_clock() -> None:
    state = state_for(unique_recipients={"windows": ["1h", "1d"], "end_time_lag": "90s"})
    assert time_range(state, "1d", 100_000.0) == {"start_time": 13_510, "end_time": 99_910}
    discovered(state, 1.0)
    senders = plan(state.senders[("bob", "1h")], state, 100_000.0)
    assert senders.params == {"user": "bob", "start_time": 96_310, "end_time": 99_910}
    totals = plan(state.totals["1h"], state, 100_000.0)
    assert totals.params == {"start_time": 96_310, "end_time": 99_910}


def test_mail_flow_windows_use_whms_parameter_names() -> None:
    state = state_for(mail_flow={"windows": ["2h"], "delivery_type": "local"})
    call = plan(state.mail_flow["2h"], state, 10_000.0)
    assert call.function == "emailtrack_user_stats"
    assert call.params == {"starttime": 2_740, "endtime": 9_940, "deliverytype": "local"}


def test_a_hot_user_by_mail_flow_gets_every_senders_window_first() -> None:
    state = state_for(
        unique_recipients={"windows": ["1h", "1d"]},
        mail_flow={"defer_fail_threshold": 10},
    )
    discovered(state, 1.0)
    state.new_epoch(2.0)
    flows = {
        "alice": parse.MailFlow("alice", 5, 5, 0, 0, 9, 1, False, False),
        "bob": parse.MailFlow("bob", 900, 100, 50, 400, 10, 1, False, False),
        "carol": parse.MailFlow("carol", 50, 50, 0, 0, 0, 1, True, False),
    }
    answer(state, state.mail_flow["1h"], flows, 3.0)
    got = order(state, 4.0, schedule.refresh_of(state.module))
    # The totals of both windows (not asked yet), then bob (defer-failures at the threshold)
    # and carol (a cPanel limit tripped), every window, before alice.
    assert got[:2] == [("TOTALS", "", "1h"), ("TOTALS", "", "1d")]
    hot = {("SENDERS", u, w) for u in ("bob", "carol") for w in ("1h", "1d")}
    assert set(got[2:6]) == hot
    assert got[2][1] == "bob"


def test_an_answer_exactly_as_old_as_refresh_may_be_asked_again() -> None:
    state = state_for(unique_recipients={"enabled": False})  # mailboxes: refresh 1m
    discovered(state, 1.0)
    mailbox = state.mailboxes[("bob", "b1@x")]
    answer(state, mailbox, Kept(()), 10.0)
    state.new_epoch(70.0)
    assert schedule.eligible(mailbox, 70.0, state.epoch_start, schedule.refresh_of(state.module))
    assert not schedule.eligible(mailbox, 69.9, 69.9, schedule.refresh_of(state.module))


def test_which_picks_carry_the_spam_signal() -> None:
    state = state_for()
    discovered(state, 1.0)
    refresh = schedule.refresh_of(state.module)
    answer(state, state.totals["1h"], {**SENDING, "bob": 500}, 2.0)
    for item in [*state.mailboxes.values(), *state.senders.values()]:
        answer(state, item, Kept(()), 1.5)
    state.new_epoch(100.0)
    # alice's and carol's totals moved: the totals cannot vouch for their breakdowns.
    answer(state, state.totals["1h"], {"alice": 6, "bob": 500, "carol": 3}, 100.5)
    picks = []
    while (picked := schedule.next_item(state, 101.0, refresh)) is not None:
        item, urgent = picked
        state.start(item, 101.0, urgent=urgent)
        picks.append((item.kind.name, item.user, urgent))
    # bob's senders are hot (urgent); everything else, oldest first, is not.
    assert picks[0] == ("SENDERS", "bob", True)
    assert all(not urgent for _, _, urgent in picks[1:])
    assert len(picks) == 1 + 7 + 2


def test_without_totals_and_budget_kept_senders_are_the_spam_signal() -> None:
    state = state_for(unique_recipients={"per_user_totals": False}, load_budget=0)
    discovered(state, 1.0)
    refresh = schedule.refresh_of(state.module)
    for item in [*state.mailboxes.values(), *state.senders.values()]:
        answer(state, item, Kept(()), 2.0)
    state.new_epoch(100.0)
    assert not schedule.spam_signal_fresh(state, 100.0, refresh)
    got = []
    while (picked := schedule.next_item(state, 100.0, refresh, refreshing=False)) is not None:
        state.start(picked[0], 100.0, urgent=picked[1])
        got.append((picked[0].kind.name, picked[1]))
    # Without a budget nothing is held back; the mailboxes only when refreshing.
    assert got == [("SENDERS", True)] * 3
    mailbox, urgent = schedule.next_item(state, 100.0, refresh) or (None, True)
    assert mailbox is not None
    assert (mailbox.kind, urgent) == (Kind.MAILBOX, False)
    # The senders are in flight: still not fresh; once answered, fresh.
    assert not schedule.spam_signal_fresh(state, 100.0, refresh)
    for item in state.senders.values():
        state.answered(item, Kept(()), 100.5)
        state.finish(item, True)
    assert schedule.spam_signal_fresh(state, 100.5, refresh)


def test_without_totals_kept_senders_are_refreshed_first_within_the_budget() -> None:
    state = state_for(unique_recipients={"per_user_totals": False})
    discovered(state, 1.0)
    refresh = schedule.refresh_of(state.module)
    for item in [*state.mailboxes.values(), *state.senders.values()]:
        answer(state, item, Kept(()), 2.0)
    state.new_epoch(100.0)
    # Every sender was answered once: with a budget, refreshing them is not the spam signal.
    assert schedule.spam_signal_fresh(state, 100.0, refresh)
    assert schedule.next_item(state, 100.0, refresh, refreshing=False) is None
    got = []
    while (picked := schedule.next_item(state, 100.0, refresh)) is not None:
        state.start(picked[0], 100.0, urgent=picked[1])
        got.append((picked[0].kind.name, picked[1]))
    assert got == [("SENDERS", False)] * 3 + [("MAILBOX", False)] * 7


def test_without_totals_a_sender_never_answered_is_the_spam_signal_even_with_a_budget() -> None:
    state = state_for(unique_recipients={"per_user_totals": False})
    discovered(state, 1.0)
    refresh = schedule.refresh_of(state.module)
    state.new_epoch(100.0)
    assert not schedule.spam_signal_fresh(state, 100.0, refresh)
    item, urgent = schedule.next_item(state, 100.0, refresh, refreshing=False) or (None, False)
    assert item is not None
    assert (item.kind, urgent) == (Kind.SENDERS, True)


def test_count_eligible_counts_every_kind_of_lane_and_server_wide_answers() -> None:
    state = state_for(unique_recipients={"refresh": "30s"})
    discovered(state, 1.0)
    refresh = schedule.refresh_of(state.module)
    answer(state, state.totals["1h"], SENDING, 10.0)
    fail(state, state.senders[("bob", "1h")], 10.0)
    for item in state.mailboxes.values():
        answer(state, item, Kept(()), 10.0)
    state.new_epoch(20.0)
    # At 25: mailboxes (refresh 1m) and totals (30s) too young; 2 new senders, 1 failed one.
    assert schedule.count_eligible(state, 25.0, refresh, 100) == 3
    # At 71: the totals and the 7 mailboxes too.
    assert schedule.count_eligible(state, 71.0, refresh, 100) == 3 + 1 + 7


def test_a_hot_breakdown_answered_before_keeps_the_signal_stale_until_asked_again() -> None:
    state = state_for()
    discovered(state, 1.0)
    refresh = schedule.refresh_of(state.module)
    bob = state.senders[("bob", "1h")]
    answer(state, bob, Kept(()), 2.0)
    state.new_epoch(10.0)
    answer(state, state.totals["1h"], {"bob": 900}, 10.5)
    assert bob in state.hot
    assert not schedule.spam_signal_fresh(state, 11.0, refresh)
    answer(state, bob, Kept(()), 11.0)
    assert schedule.spam_signal_fresh(state, 11.0, refresh)


def test_work_that_exactly_fits_before_the_deadline_is_waited_for() -> None:
    state = state_for(unique_recipients={"enabled": False}, mail_flow={"enabled": False})
    discovered(state, 1.0)
    refresh = schedule.refresh_of(state.module)
    state.new_epoch(2.0)
    mailboxes = len(state.mailboxes)  # 7, all new; 11 items in all
    # Capacity: 1.75 s / 0.25 s a call x 1 at a time = 7 calls: exactly what is left.
    assert not schedule.answer_now(state, 2.0, 3.75, refresh, call_seconds=0.25, concurrency=1)
    assert mailboxes == 7
    # One call less of room: it cannot fit, answer now.
    assert schedule.answer_now(state, 2.0, 3.5, refresh, call_seconds=0.25, concurrency=1)
    # A call in flight counts once, as one of the seven.
    state.start(next(iter(state.mailboxes.values())), 2.0, urgent=False)
    assert not schedule.answer_now(state, 2.0, 3.75, refresh, call_seconds=0.25, concurrency=1)


def test_nothing_is_asked_before_the_first_probe() -> None:
    state = state_for()
    assert schedule.next_item(state, 1.0, schedule.refresh_of(state.module)) is None
    state.new_epoch(5.0)
    assert state.interval is None
    assert schedule.next_item(state, 5.0, schedule.refresh_of(state.module)) is not None
    state.new_epoch(35.0)
    assert state.interval == 30.0


def test_first_time_picks_do_not_carry_the_spam_signal() -> None:
    state = state_for()
    discovered(state, 1.0)
    answer(state, state.totals["1h"], {}, 1.5)
    state.new_epoch(2.0)
    refresh = schedule.refresh_of(state.module)
    picked = schedule.next_item(state, 2.0, refresh)
    assert picked is not None
    assert (picked[0].kind, picked[1]) == (Kind.TOTALS, True)
    state.start(picked[0], 2.0, urgent=True)
    picked = schedule.next_item(state, 2.0, refresh)
    assert picked is not None
    assert (picked[0].kind, picked[1]) == (Kind.MAILBOX, False)


def test_the_tally_since_the_previous_probe_and_whm_up() -> None:
    state = state_for()
    assert state.take_tally().answered is None
    assert not state.up
    state.record(CallRecord("listaccts", "", 0.1, "success"), answered=True)
    state.record(CallRecord("listaccts", "", 0.1, "connect", "refused"), answered=False)
    state.record(
        CallRecord(FLOW, "1h", 0.1, "protocol", "record refused"), answered=False, call_ended=False
    )
    state.record(CallRecord("listaccts", "", 0.1, "connect", "refused"), answered=False)
    state.abandon("list_pops_for")
    state.abandon("list_pops_for")
    # A debug probe looks without taking: up as the calls so far say, the tally left in place.
    peeked, up = state.peek_tally()
    assert (up, state.up, peeked.logged) == (True, False, 4)
    assert state.tally is peeked
    tally = state.take_tally()
    assert tally is peeked
    assert tally.calls == {"listaccts": 3}
    assert tally.errors == {("listaccts", "connect"): 2, (FLOW, "protocol"): 1}
    assert tally.abandoned == {"list_pops_for": 2}
    assert [c.outcome for c in tally.log] == ["success", "connect", "protocol", "connect"]
    assert state.up
    # Nothing ended since: whm_up says what the previous scrape said.
    assert state.take_tally().calls == {}
    assert state.up
    state.record(CallRecord("listaccts", "", 0.1, "auth"), answered=False)
    state.take_tally()
    assert not state.up


def test_an_abandoned_call_leaves_its_item_as_it_was() -> None:
    state = state_for()
    discovered(state, 1.0)
    fresh = state.mailboxes[("bob", "b1@x")]
    state.start(fresh, 5.0, urgent=False)
    state.finish(fresh, False, abandoned=True)
    assert fresh.attempted_at == -math.inf
    assert fresh.lane is state.lanes[(Kind.MAILBOX, Stage.NEW)]
    kept = state.mailboxes[("bob", "bob")]
    answer(state, kept, Kept(()), 2.0)
    state.start(kept, 5.0, urgent=True)
    assert state.urgent_in_flight == 1
    state.finish(kept, False, abandoned=True)
    assert (kept.attempted_at, kept.last_ok) == (2.0, True)
    assert kept.lane is state.lanes[(Kind.MAILBOX, Stage.KEPT)]
    assert state.urgent_in_flight == 0
    assert not any(i.kind is Kind.MAILBOX for i in state.in_flight)


def test_hot_order_biggest_first_ties_by_name_and_started_items_leave_it() -> None:
    state = state_for()
    discovered(state, 1.0)
    senders = state.senders
    answer(state, senders[("carol", "1h")], Kept(()), 5.0)
    state.new_epoch(5.0)
    # carol's breakdown is as new as this total (both at 5.0): not older, not hot.
    answer(state, state.totals["1h"], {"alice": 300, "bob": 300, "carol": 900}, 5.0)
    assert list(state.hot) == [senders[("alice", "1h")], senders[("bob", "1h")]]
    answer(state, state.totals["1h"], {"alice": 300, "bob": 300, "carol": 900}, 6.0)
    assert list(state.hot) == [senders[(u, "1h")] for u in ("alice", "bob", "carol")]
    state.start(senders[("bob", "1h")], 6.0, urgent=True)
    assert senders[("bob", "1h")] not in state.hot
    assert state.listaccts is not None
    answer(state, state.listaccts, {"alice": USERS["alice"]}, 7.0)
    # carol left: her hot breakdown goes with her.
    assert list(state.hot) == [senders[("alice", "1h")]]


def test_account_filters_apply_to_addresses_and_main_mailboxes() -> None:
    state = state_for(discovery={"include_accounts": [".*@x", "bob"], "exclude_accounts": ["a2@x"]})
    discovered(state, 1.0)
    assert state.accounts == {
        "alice": ("a1@x",),
        "bob": ("b1@x", "bob"),
        "carol": ("c1@x",),
    }


def test_include_users_keeps_only_those_listed() -> None:
    state = state_for(discovery={"include_users": ["alice|carol"]})
    assert state.listaccts is not None
    answer(state, state.listaccts, dict(USERS), 1.0)
    assert set(state.accounts) == {"alice", "carol"}


def test_an_explicit_user_dropped_by_listaccts_keeps_its_explicit_accounts() -> None:
    state = state_for(explicit={"bob": ("sales@bob.example",)})
    discovered(state, 1.0)
    assert set(state.accounts["bob"]) == {"b1@x", "bob", "sales@bob.example"}
    assert state.listaccts is not None
    answer(state, state.listaccts, {"alice": USERS["alice"]}, 2.0)
    assert state.accounts["bob"] == ("sales@bob.example",)
    assert {a for u, a in state.mailboxes if u == "bob"} == {"sales@bob.example"}
    assert ("bob", "1h") in state.senders
    assert_lanes_hold_only_known_items(state)


def test_dropping_a_user_with_mailboxes_and_senders_switched_off() -> None:
    state = state_for(mailboxes={"enabled": False}, unique_recipients={"enabled": False})
    discovered(state, 1.0)
    assert state.listaccts is not None
    answer(state, state.listaccts, {"alice": USERS["alice"]}, 2.0)
    assert set(state.accounts) == {"alice"}
    assert state.size == 1 + 1  # listaccts, alice's addresses


def test_without_discovery_the_explicit_users_are_everything() -> None:
    state = state_for(explicit={"dave": ("d@x",)}, discovery={"enabled": False})
    assert state.listaccts is None
    assert state.accounts == {"dave": ("d@x",)}
    found = snapshot("t", state, 1.0, 0.1, 10.0, pending=False)
    assert found.up is False
    assert found.discovery_complete
    assert found.discovered_accounts == 1


def test_a_probe_waits_for_what_was_due_when_it_came_not_for_what_falls_due_after() -> None:
    # A mailbox pass about as long as mailboxes.refresh keeps some mailbox falling due at any
    # moment: a probe that waited for those too would wait for its deadline every time.
    state = state_for(unique_recipients={"enabled": False})
    discovered(state, 0.0)
    refresh = schedule.refresh_of(state.module)
    assert refresh[Kind.MAILBOX] == 60.0
    first, *others = state.mailboxes.values()
    answer(state, first, Kept(()), 5.0)
    for item in others:
        answer(state, item, Kept(()), 30.0)
    state.new_epoch(65.0)  # `first` is due (exactly its refresh), the others are not
    answer_now = schedule.answer_now
    assert not answer_now(state, 65.0, 75.0, refresh, call_seconds=0.1, concurrency=8)
    state.start(first, 65.0, urgent=False)
    # Its call, in flight, was due when the round began: the probe waits for it.
    assert not answer_now(state, 65.5, 75.0, refresh, call_seconds=0.1, concurrency=8)
    state.answered(first, Kept(()), 66.0)
    state.finish(first, True)
    assert answer_now(state, 66.0, 75.0, refresh, call_seconds=0.1, concurrency=8)
    # The others fall due at 90 while a probe of this round still waits: they do not hold it,
    # neither waiting nor in flight.
    assert schedule.count_eligible(state, 95.0, refresh, 99) == len(others)
    assert answer_now(state, 95.0, 105.0, refresh, call_seconds=0.1, concurrency=8)
    state.start(others[0], 95.0, urgent=False)
    assert answer_now(state, 95.0, 105.0, refresh, call_seconds=0.1, concurrency=8)
    # The next round waits for them.
    state.new_epoch(96.0)
    assert not answer_now(state, 96.0, 106.0, refresh, call_seconds=0.1, concurrency=8)


def test_server_wide_answers_within_refresh_keep_the_signal_fresh() -> None:
    state = state_for(unique_recipients={"refresh": "30s"})
    discovered(state, 1.0)
    refresh = schedule.refresh_of(state.module)
    answer(state, state.totals["1h"], SENDING, 10.0)
    for item in state.senders.values():
        answer(state, item, Kept(()), 10.0)
    state.new_epoch(20.0)
    assert schedule.spam_signal_fresh(state, 25.0, refresh)
    assert not schedule.spam_signal_fresh(state, 41.0, refresh)
    # The mailboxes are all still to ask and cannot fit in 0.1 s: answer at once.
    assert schedule.answer_now(state, 25.0, 25.1, refresh, call_seconds=0.1, concurrency=1)
    assert not schedule.answer_now(state, 41.0, 41.1, refresh, call_seconds=0.1, concurrency=1)


def assert_lanes_hold_only_known_items(state: TargetState) -> None:
    known = {
        *state.pops.values(),
        *state.mailboxes.values(),
        *state.senders.values(),
        *([state.listaccts] if state.listaccts else []),
    }
    for lane in state.lanes.values():
        assert set(lane) <= known
    assert set(state.hot) <= known


def test_hot_users_go_biggest_first_and_ties_by_name() -> None:
    state = state_for()
    discovered(state, 1.0)
    state.new_epoch(2.0)
    answer(state, state.totals["1h"], {"bob": 300, "alice": 300, "carol": 900}, 3.0)
    assert [i.user for i in state.hot] == ["carol", "alice", "bob"]


def test_slow_passes_are_logged_once_and_their_recovery_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = state_for(mailboxes={"max_age": "10m"}, unique_recipients={"enabled": False})
    discovered(state, 0.0)
    for item in state.mailboxes.values():
        answer(state, item, Kept(()), 10.0)
    with caplog.at_level(logging.INFO, logger="whm_exporter.probe"):
        snapshot("t", state, 100.0, 0.1, 10.0, pending=False)
        assert not caplog.records
        snapshot("t", state, 700.0, 0.1, 10.0, pending=False)
        snapshot("t", state, 701.0, 0.1, 10.0, pending=False)
        assert [r.levelname for r in caplog.records] == ["WARNING"]
        assert "max_concurrency" in caplog.records[0].getMessage()
        for item in state.mailboxes.values():
            answer(state, item, Kept(()), 702.0)
        snapshot("t", state, 703.0, 0.1, 10.0, pending=False)
        assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]
        # An answer that outlives max_age because WHM refuses to renew it is no slow pass.
        caplog.clear()
        fail(state, next(iter(state.mailboxes.values())), 800.0)
        snapshot("t", state, 1400.0, 0.1, 10.0, pending=False)
        assert [r.levelname for r in caplog.records] == ["WARNING"]
        assert state.slow_warned
        for item in list(state.mailboxes.values())[1:]:
            answer(state, item, Kept(()), 1401.0)
        snapshot("t", state, 1402.0, 0.1, 10.0, pending=False)
        assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]


def test_every_function_is_refreshed_by_its_own_section() -> None:
    # Six different values: a call mapped to another section's refresh shows at once.
    state = state_for(
        discovery={"refresh": "11m"},
        mailboxes={"refresh": "2m"},
        unique_recipients={"refresh": "3s"},
        mail_flow={"enabled": True, "refresh": "25s"},
    )
    assert schedule.refresh_of(state.module) == {
        Kind.LISTACCTS: 660.0,
        Kind.POPS: 660.0,
        Kind.MAILBOX: 120.0,
        Kind.SENDERS: 3.0,
        Kind.TOTALS: 3.0,
        Kind.MAIL_FLOW: 25.0,
    }


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
        found = snapshot("t", state, now, 0.1, 10.0, pending=False)
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


def test_users_the_totals_show_hot_before_listaccts_are_hot_at_once() -> None:
    # The per-user totals go first, so on a cold start they answer before any user is known.
    state = state_for()
    state.new_epoch(0.0)
    answer(state, state.totals["1h"], {"carol": 400, "alice": 3, "dave": 500}, 1.0)
    assert [(i.user, i.outside) for i in state.hot] == [("dave", True), ("carol", True)]
    discovered(state, 2.0)
    # carol is listed: her item is the inventory's now, still hot; dave is not listed.
    carol, dave = state.senders[("carol", "1h")], state.senders[("dave", "1h")]
    assert [i.user for i in state.hot] == ["dave", "carol"]
    assert (carol.outside, dave.outside) == (False, True)
    assert carol.lane is state.lanes[(Kind.SENDERS, Stage.NEW)]
    assert carol not in state.outside
    assert dave in state.outside
    # A later listing that adds dave makes him one of the inventory's too.
    fail(state, carol, 3.0)
    assert state.listaccts is not None
    answer(state, state.listaccts, {**USERS, "dave": Account("dave", suspended=False)}, 4.0)
    assert not dave.outside
    assert not state.outside
    assert [i.user for i in state.hot] == ["dave"]


def test_users_the_mail_flow_shows_hot_before_listaccts_are_hot_at_once() -> None:
    state = state_for(mail_flow={"defer_fail_threshold": 10})
    state.new_epoch(0.0)
    flows = {
        u: parse.MailFlow(u, 9, 0, 0, 9, n, 1, False, False)
        for u, n in (("bob", 40), ("alice", 1), ("dave", 12))
    }
    answer(state, state.mail_flow["1h"], flows, 1.0)
    assert [(i.user, i.outside) for i in state.hot] == [("bob", True), ("dave", True)]
    discovered(state, 2.0)
    assert [(i.user, i.outside) for i in state.hot] == [("bob", False), ("dave", True)]


def test_an_outsider_loses_its_senders_when_whm_no_longer_names_it() -> None:
    state = state_for()
    discovered(state, 1.0)
    totals = state.totals["1h"]
    answer(state, totals, {**SENDING, "nobody": 800}, 2.0)
    nobody = state.senders[("nobody", "1h")]
    assert nobody.outside
    # Quiet now but still named: kept (its last answer is still served).
    answer(state, totals, {**SENDING, "nobody": 5}, 3.0)
    assert state.senders.get(("nobody", "1h")) is nobody
    answer(state, totals, SENDING, 4.0)
    assert ("nobody", "1h") not in state.senders
    assert nobody.gone
    assert not state.outside


def test_a_failed_outsider_is_asked_again_only_while_hot() -> None:
    state = state_for()
    discovered(state, 1.0)
    refresh = schedule.refresh_of(state.module)
    totals = state.totals["1h"]
    answer(state, totals, {**SENDING, "nobody": 800}, 2.0)
    nobody = state.senders[("nobody", "1h")]
    fail(state, nobody, 2.5)
    # In no lane: not "never answered" work that every round would retry.
    assert nobody.lane is None
    state.new_epoch(10.0)
    answer(state, totals, {**SENDING, "nobody": 50}, 10.5)
    picked = order(state, 11.0, refresh)
    assert ("SENDERS", "nobody", "1h") not in picked
    state.new_epoch(20.0)
    answer(state, totals, {**SENDING, "nobody": 900}, 20.5)
    assert schedule.next_item(state, 21.0, refresh) == (nobody, True)


@pytest.mark.parametrize(
    "users", [{"include_users": ["alice|bob|carol"]}, {"exclude_users": ["nobody"]}]
)
def test_a_user_outside_the_user_filters_gets_nothing(users: dict[str, list[str]]) -> None:
    state = state_for(discovery=users)
    discovered(state, 1.0)
    answer(state, state.totals["1h"], {**SENDING, "nobody": 800}, 2.0)
    assert ("nobody", "1h") not in state.senders
    assert state.listaccts is not None
    assert not state.listaccts.early


def test_an_unlisted_user_asks_for_an_early_relist_at_most_every_tenth_of_refresh() -> None:
    state = state_for(discovery={"refresh": "10m"})
    discovered(state, 1.0)
    listing = state.listaccts
    assert listing is not None
    refresh = schedule.refresh_of(state.module)
    totals = state.totals["1h"]
    # Too soon after the listing (1 min of 10): no re-list.
    answer(state, totals, {**SENDING, "newbie": 3}, 59.0)
    assert not listing.early
    # A suspended user was listed (and skipped): no re-list for it.
    state.listed.add("frozen")
    answer(state, totals, {**SENDING, "frozen": 3}, 100.0)
    assert not listing.early
    # A (slow) listing in flight since the first one answers it already.
    state.start(listing, 1.0, urgent=False)
    answer(state, totals, {**SENDING, "newbie": 3}, 61.0)
    assert not listing.early
    state.finish(listing, False, abandoned=True)
    answer(state, totals, {**SENDING, "newbie": 3}, 61.0)
    assert listing.early
    # Asked as a first answer would be (not a refresh the budget holds back), at once.
    state.new_epoch(62.0)
    state.start(totals, 62.0, urgent=True)  # the totals, as ever, first
    found, urgent = schedule.next_item(state, 62.0, refresh, refreshing=False) or (None, True)
    assert (found, urgent) == (listing, False)
    assert not schedule.is_refresh(listing, urgent)
    state.start(listing, 62.0, urgent=False)
    assert not listing.early
    state.answered(listing, {**USERS, "newbie": Account("newbie", suspended=False)}, 62.5)
    state.finish(listing, True)
    assert "newbie" in state.pops
    # Listed now: it asks for nothing more.
    answer(state, totals, {**SENDING, "newbie": 3}, 200.0)
    assert not listing.early


# --- what the per-user totals vouch for (TargetState._confirm) -------------------------------


def test_a_user_absent_from_the_totals_has_an_empty_breakdown_without_a_call() -> None:
    state = state_for()
    discovered(state, 1.0)
    answer(state, state.totals["1h"], {"alice": 5}, 2.0)
    bob = state.senders[("bob", "1h")]
    assert (bob.answer, bob.answered_at, bob.last_ok) == (Kept(()), 2.0, True)
    assert bob.lane is state.lanes[(Kind.SENDERS, Stage.KEPT)]
    # alice sent: her breakdown is still to ask.
    assert state.senders[("alice", "1h")].answer is None
    state.new_epoch(1.5)
    got = order(state, 3.0, schedule.refresh_of(state.module))
    assert [k[1] for k in got if k[0] == "SENDERS"] == ["alice"]


def test_an_unchanged_quiet_total_vouches_for_the_breakdown_read_with_it() -> None:
    state = state_for()
    discovered(state, 1.0)
    totals = state.totals["1h"]
    answer(state, totals, SENDING, 2.0)
    alice = state.senders[("alice", "1h")]
    answer(state, alice, Kept((), 1), 3.0)
    assert alice.basis == 5
    state.new_epoch(10.0)
    answer(state, totals, SENDING, 10.5)
    # As if read again at 10.5: same answer, not asked in this round.
    assert (alice.answer, alice.answered_at, alice.attempted_at) == (Kept((), 1), 10.5, 10.5)
    refresh = schedule.refresh_of(state.module)
    assert not schedule.eligible(alice, 11.0, state.epoch_start, refresh)
    served = snapshot("t", state, 11.0, 0.1, 10.0, pending=False)
    assert served.items[(Kind.SENDERS.value, "fresh")] == 1
    # bob and carol sent (3 and 2): their breakdowns are still to be read.
    assert served.items[(Kind.SENDERS.value, "missing")] == 2


def test_a_changed_total_does_not_vouch() -> None:
    state = state_for()
    discovered(state, 1.0)
    totals = state.totals["1h"]
    answer(state, totals, SENDING, 2.0)
    alice = state.senders[("alice", "1h")]
    answer(state, alice, Kept(()), 3.0)
    answer(state, totals, {**SENDING, "alice": 6}, 10.0)
    assert alice.answered_at == 3.0
    assert alice.basis == 5


def test_a_hot_total_never_vouches_it_heats() -> None:
    state = state_for(unique_recipients={"priority_threshold": 5})
    discovered(state, 1.0)
    totals = state.totals["1h"]
    answer(state, totals, SENDING, 2.0)
    alice = state.senders[("alice", "1h")]
    answer(state, alice, Kept(()), 3.0)
    answer(state, totals, SENDING, 10.0)
    # At the threshold: a sender may be at it too. Asked first, never vouched for.
    assert alice.answered_at == 3.0
    assert alice in state.hot


def test_a_breakdown_in_flight_or_newer_than_the_totals_is_left_alone() -> None:
    state = state_for()
    discovered(state, 1.0)
    totals = state.totals["1h"]
    bob, carol = state.senders[("bob", "1h")], state.senders[("carol", "1h")]
    state.start(bob, 1.5, urgent=False)
    answer(state, carol, Kept((), 1), 3.0)
    # Totals read at 2.0 but arriving after carol's breakdown of 3.0 say nothing of it.
    state.start(totals, 2.0, urgent=True)
    state.answered(totals, {"alice": 5}, 2.0)
    state.finish(totals, True)
    assert bob.answer is None
    assert bob.in_flight
    assert (carol.answer, carol.answered_at) == (Kept((), 1), 3.0)


def test_the_breakdown_of_another_window_is_not_vouched_for() -> None:
    state = state_for(unique_recipients={"windows": ["1h", "1d"]})
    discovered(state, 1.0)
    answer(state, state.totals["1h"], {}, 2.0)
    assert state.senders[("bob", "1h")].answer == Kept(())
    assert state.senders[("bob", "1d")].answer is None


def test_a_new_user_absent_from_earlier_totals_gets_an_empty_breakdown_when_listed() -> None:
    state = state_for()
    answer(state, state.totals["1h"], {"alice": 5}, 1.0)
    discovered(state, 2.0)
    # Listed after the totals: those still say bob sent nothing.
    assert state.senders[("bob", "1h")].answer == Kept(())
    assert state.senders[("bob", "1h")].answered_at == 1.0
    assert state.senders[("alice", "1h")].answer is None


# --- the load budget's part in the order ------------------------------------------------------


def test_without_refreshing_only_the_spam_signal_and_first_answers_go() -> None:
    state = state_for()
    discovered(state, 1.0)
    refresh = schedule.refresh_of(state.module)
    answer(state, state.totals["1h"], SENDING, 2.0)
    for item in state.mailboxes.values():
        answer(state, item, Kept(()), 2.0)
    state.new_epoch(100.0)
    got = []
    while (picked := schedule.next_item(state, 100.0, refresh, refreshing=False)) is not None:
        item, urgent = picked
        state.start(item, 100.0, urgent=urgent)
        got.append((item.kind.name, urgent, schedule.is_refresh(item, urgent)))
    # The totals (spam signal) and the three senders never answered; no mailbox refresh.
    assert got == [("TOTALS", True, False)] + [("SENDERS", False, False)] * 3
    assert schedule.next_item(state, 100.0, refresh) is not None


def test_a_refresh_is_a_renewed_answer_that_is_not_the_spam_signal() -> None:
    state = state_for()
    discovered(state, 1.0)
    mailbox = next(iter(state.mailboxes.values()))
    assert not schedule.is_refresh(mailbox, False)
    answer(state, mailbox, Kept(()), 2.0)
    assert schedule.is_refresh(mailbox, False)
    assert not schedule.is_refresh(mailbox, True)


def test_first_answers_are_pending_while_the_addresses_asked_may_bring_mailboxes() -> None:
    state = state_for(unique_recipients={"enabled": False}, discovery={"main_account": False})
    state.new_epoch(0.0)
    assert state.listaccts is not None
    answer(state, state.listaccts, dict(USERS), 0.5)
    for item in state.pops.values():
        state.start(item, 0.5, urgent=False)
    # Nothing never answered waits, but the calls in flight bring mailboxes: a probe that took
    # the budget's pace now would answer long before it could have had every mailbox.
    waiting = [(k, s) for k in Kind for s in (Stage.NEW, Stage.FAILED) if (k, s) in state.lanes]
    assert not any(state.lanes[key].head() for key in waiting)
    assert schedule.first_answers_pending(state)
    for item in state.pops.values():
        state.answered(item, Addresses(POPS[item.user]), 1.0)
        state.finish(item, True)
    for item in state.mailboxes.values():
        answer(state, item, Kept(()), 1.5)
    assert not schedule.first_answers_pending(state)


def test_first_answers_are_pending_until_each_item_was_asked_in_the_round() -> None:
    state = state_for()
    state.new_epoch(0.0)
    assert schedule.first_answers_pending(state)
    discovered(state, 1.0)
    broken = state.mailboxes[("bob", "b1@x")]
    for item in [*state.mailboxes.values(), *state.senders.values()]:
        if item is broken:
            fail(state, item, 1.0)
        else:
            answer(state, item, Kept(()), 1.0)
    # Failed in this round: not again before the next.
    assert not schedule.first_answers_pending(state)
    state.new_epoch(1.0)  # a round that began at the very moment it failed
    assert not schedule.first_answers_pending(state)
    state.new_epoch(2.0)
    assert schedule.first_answers_pending(state)
    answer(state, broken, Kept(()), 2.5)
    assert not schedule.first_answers_pending(state)


def test_a_breakdown_read_at_the_totals_own_moment_is_left_alone() -> None:
    state = state_for()
    discovered(state, 1.0)
    totals = state.totals["1h"]
    answer(state, totals, SENDING, 2.0)
    alice = state.senders[("alice", "1h")]
    answer(state, alice, Kept((), 1), 3.0)
    # Totals of the same moment that no longer name alice say nothing of what was read then.
    answer(state, totals, {"bob": 3, "carol": 2}, 3.0)
    assert alice.answer == Kept((), 1)


def test_an_item_in_flight_does_not_stop_the_others_being_vouched_for() -> None:
    state = state_for()
    discovered(state, 1.0)
    state.start(state.senders[("alice", "1h")], 1.5, urgent=False)
    answer(state, state.totals["1h"], {"alice": 5}, 2.0)
    assert state.senders[("carol", "1h")].answer == Kept(())


def test_a_user_listed_after_others_is_vouched_for_by_earlier_totals() -> None:
    state = state_for()
    discovered(state, 1.0)
    answer(state, state.totals["1h"], {"alice": 5}, 2.0)
    assert state.listaccts is not None
    answer(state, state.listaccts, {**USERS, "dave": Account("dave", suspended=False)}, 3.0)
    answer(state, state.pops["dave"], Addresses(("d@x",)), 3.0)
    assert state.senders[("dave", "1h")].answer == Kept(())
    assert state.senders[("dave", "1h")].answered_at == 2.0


def test_a_user_that_sent_nothing_then_as_much_as_before_is_asked_again() -> None:
    state = state_for()
    discovered(state, 1.0)
    totals = state.totals["1h"]
    answer(state, totals, SENDING, 2.0)
    alice = state.senders[("alice", "1h")]
    answer(state, alice, Kept((), 1), 3.0)
    answer(state, totals, {"bob": 3, "carol": 2}, 4.0)
    assert alice.answer == Kept(())
    # Back at 5: the empty breakdown the totals vouched for is not the one read with 5.
    answer(state, totals, SENDING, 5.0)
    assert alice.answered_at == 4.0
    state.new_epoch(6.0)
    assert schedule.eligible(alice, 6.0, 6.0 - 1, schedule.refresh_of(state.module))


def test_a_breakdown_read_while_the_totals_lacked_the_user_is_not_vouched_for_by_one() -> None:
    state = state_for()
    discovered(state, 1.0)
    totals = state.totals["1h"]
    answer(state, totals, {"bob": 3}, 2.0)
    alice = state.senders[("alice", "1h")]
    state.start(alice, 2.5, urgent=False)  # asked before the totals said she sent nothing
    state.answered(alice, Kept((), 1), 3.0)
    state.finish(alice, True)
    assert alice.basis == 0
    answer(state, totals, {"alice": 1, "bob": 3}, 4.0)
    assert alice.answered_at == 3.0
