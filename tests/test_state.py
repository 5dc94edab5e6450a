"""A target's state with a fake clock: how discovery adds and drops items, which users are hot
(inside the inventory or outside it), the tally of calls, and what the per-user totals vouch
for."""

from __future__ import annotations

import math

import pytest
from statekit import SENDING, USERS, answer, discovered, fail, order, state_for

from whm_exporter.collect import schedule
from whm_exporter.collect.state import Addresses, Kept, Kind, Stage, TargetState
from whm_exporter.probe import snapshot
from whm_exporter.snapshot import CallRecord
from whm_exporter.whm import parse
from whm_exporter.whm.parse import Account

FLOW = "emailtrack_user_stats"


# --- the inventory: what discovery adds and drops ---------------------------------------------


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
    found = snapshot(state, 1.0, 0.1, 10.0, pending=False)
    assert found.up is False
    assert found.discovery_complete
    assert found.discovered_accounts == 1


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


# --- hot users and users outside the inventory ------------------------------------------------


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


def test_hot_users_go_biggest_first_and_ties_by_name() -> None:
    state = state_for()
    discovered(state, 1.0)
    state.new_epoch(2.0)
    answer(state, state.totals["1h"], {"bob": 300, "alice": 300, "carol": 900}, 3.0)
    assert [i.user for i in state.hot] == ["carol", "alice", "bob"]


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


# --- the tally of calls, and an abandoned call ------------------------------------------------


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


# --- what the per-user totals vouch for (TargetState._confirm) --------------------------------


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
    served = snapshot(state, 11.0, 0.1, 10.0, pending=False)
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
