"""The scheduler with a fake clock: which call comes next, when an item may be asked again,
when a probe may answer, what each call asks WHM for, and the load budget's part in the order.
(What the state does with the answers: test_state.py; what a probe serves of it: test_probe.py.)"""

from __future__ import annotations

from statekit import POPS, SENDING, USERS, answer, discovered, fail, order, state_for

from whm_exporter.collect import schedule
from whm_exporter.collect.calls import plan, time_range
from whm_exporter.collect.state import DNS_KINDS, LOGIN_KINDS, Addresses, Kept, Kind, Stage
from whm_exporter.whm import parse


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


def test_windows_end_end_time_lag_behind_the_clock() -> None:
    state = state_for(unique_recipients={"windows": ["1h", "1d"], "end_time_lag": "90s"})
    assert time_range(state, "1d", 100_000.0) == {"start_time": 13_510, "end_time": 99_910}
    discovered(state, 1.0)
    senders = plan(state.senders[("bob", "1h")], state, 100_000.0)
    assert senders is not None
    assert senders.params == {"user": "bob", "start_time": 96_310, "end_time": 99_910}
    totals = plan(state.totals["1h"], state, 100_000.0)
    assert totals is not None
    assert totals.params == {"start_time": 96_310, "end_time": 99_910}


def test_mail_flow_windows_use_whms_parameter_names() -> None:
    state = state_for(mail_flow={"windows": ["2h"], "delivery_type": "local"})
    call = plan(state.mail_flow["2h"], state, 10_000.0)
    assert call is not None
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


def test_every_function_is_refreshed_by_its_own_section() -> None:
    # Different values: a call mapped to another section's refresh shows at once.
    state = state_for(
        discovery={"refresh": "11m"},
        mailboxes={"refresh": "2m"},
        unique_recipients={"refresh": "3s"},
        mail_flow={"enabled": True, "refresh": "25s"},
        server_settings={"refresh": "7m"},
        logins={"refresh": "90s"},
        mail_queue={"refresh": "4m"},
        dns_auth={"refresh": "5h"},
    )
    assert schedule.refresh_of(state.module) == {
        Kind.LISTACCTS: 660.0,
        Kind.POPS: 660.0,
        Kind.MAILBOX: 120.0,
        Kind.SENDERS: 3.0,
        Kind.TOTALS: 3.0,
        Kind.MAIL_FLOW: 25.0,
        Kind.SETTING: 420.0,
        **dict.fromkeys(LOGIN_KINDS, 90.0),
        Kind.MAIL_QUEUE: 240.0,
        **dict.fromkeys(DNS_KINDS, 18000.0),
    }


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


def test_the_few_server_wide_items_are_renewed_when_due_before_older_mailboxes() -> None:
    # Oldest first, cPHulk's and the queue's answers would wait a whole pass over every mailbox
    # (on a big, slow server, longer than their max_age).
    state = state_for(
        logins={"enabled": True},
        mail_queue={"enabled": True},
        unique_recipients={"enabled": False},
    )
    discovered(state, 1.0)
    for item in state.mailboxes.values():
        answer(state, item, Kept(()), 10.0)
    assert state.queue is not None
    for item in [*state.logins.values(), state.queue]:
        answer(state, item, object(), 50.0)
    refresh = schedule.refresh_of(state.module)
    # At 150 the mailboxes (60 s) are due, cPHulk's answers (2 min) not yet: mailboxes.
    state.new_epoch(150.0)
    picked = schedule.next_item(state, 150.0, refresh)
    assert picked is not None
    assert picked[0].kind is Kind.MAILBOX
    # At 171 cPHulk's are due: they go before the older mailboxes, the queue (5 min) not yet.
    state.new_epoch(171.0)
    got = order(state, 171.0, refresh)
    login_kinds = {k.name for k in LOGIN_KINDS}
    assert {k for k, _, _ in got[: len(LOGIN_KINDS)]} == login_kinds
    assert "MAIL_QUEUE" not in {k for k, _, _ in got}
    assert {k for k, _, _ in got[len(LOGIN_KINDS) :]} == {"MAILBOX"}
