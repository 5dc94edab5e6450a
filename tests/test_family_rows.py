"""What the families write to the kept-state file and read back, and what they keep of an
answer, tested on each family alone (the mutation run of issue 24 found these untested: the
kept-state schema is built at import, and the restore tests never had an inventory asked again
after what hangs from it)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from conftest import fixture
from pydantic import ConfigDict, TypeAdapter
from statekit import USERS, answer, discovered, state_for

from whm_exporter.collect import persist
from whm_exporter.collect.state import Addresses, Item, Kept, Kind, TargetState
from whm_exporter.families import FAMILIES, discovery, mail_flow, mailboxes
from whm_exporter.families.base import Fields, Served
from whm_exporter.snapshot import DiskSample, MailboxSample, SenderSample
from whm_exporter.whm.parse import Account, Mailbox, MailFlow

# A user listaccts names that the filters leave out: kept in the file by name alone.
DAVE = Account("dave", suspended=True)


def _collected() -> TargetState:
    """A state in which every kind has an answer, with a user skip_suspended left out."""
    state = state_for(discovery={"function": "list_pops_with_disk"}, mail_flow={"enabled": True})
    assert state.listaccts is not None
    answer(state, state.listaccts, {**USERS, "dave": DAVE}, 1.0)
    disk = (Mailbox("a1@x", False, 10, 100), Mailbox("alice", True, 5, None))
    for user, item in state.pops.items():
        mine = tuple(m for m in disk if user == "alice")
        answer(state, item, Addresses(("a1@x",) if mine else (), mine), 1.0)
    for (user, account), item in state.mailboxes.items():
        answer(state, item, Kept((MailboxSample(user, account, "INBOX", 3, 40),), 1), 1.0)
    for totals in state.totals.values():
        answer(state, totals, {"alice": 5, "bob": 3}, 2.0)
    (user, window), sender = next(iter(state.senders.items()))
    answer(state, sender, Kept((SenderSample(user, "a1@x", window, 5),), 2), 3.0)
    for flow in state.mail_flow.values():
        answer(state, flow, {"bob": MailFlow("bob", 1, 2, 3, 4, 5, 6, True, False)}, 2.0)
    return state


def test_every_kept_answer_fits_the_schema_its_family_declares_and_reads_back() -> None:
    state = _collected()
    seen = set()
    for family in FAMILIES:
        for item in family.items(state):
            kept = family.captured(item, state)
            if kept is None:
                continue
            seen.add(item.kind)
            wire = TypeAdapter(family.wire_type(item.kind), config=ConfigDict(strict=True))
            value = wire.validate_json(orjson.dumps(family.dump(item.kind, kept)))
            back = family.load(item.kind, value, item.user, item.subject)
            if item is state.listaccts:
                # The users left out come back as users the same filters leave out again.
                assert back == {**USERS, "dave": DAVE}
            else:
                assert back == item.answer
    # Every kind _collected answers (a family added later adds its answer there).
    assert seen == {
        Kind.LISTACCTS,
        Kind.POPS,
        Kind.TOTALS,
        Kind.MAIL_FLOW,
        Kind.SENDERS,
        Kind.MAILBOX,
    }


def _restored(state: TargetState) -> TargetState:
    taken = persist.capture(state, "id", 0.0)
    document = persist.parse(persist.dump(taken, "t", 10.0))
    return persist.restore(document, state.module, state.explicit, 10.0, 10.0)


def _answers(state: TargetState) -> dict[tuple[str, str, str], Any]:
    return {
        (i.kind.value, i.user, i.subject): (i.answer, i.answered_at)
        for f in FAMILIES
        for i in f.items(state)
    }


def test_an_inventory_asked_again_after_what_hangs_from_it_is_replayed_first() -> None:
    # Asked in the order a long-running target asks: the users, their addresses, the mailboxes,
    # then the addresses again, then the users again. Replayed in the order asked, an address
    # list would come before the listaccts answer that gives its user, and a mailbox before
    # the address list that gives it: a document the restore would refuse.
    state = state_for()
    discovered(state, 1.0)
    for item in state.mailboxes.values():
        answer(state, item, Kept((), 0), 2.0)
    for pops in state.pops.values():
        assert pops.answer is not None
        answer(state, pops, pops.answer, 3.0)
    assert state.listaccts is not None
    answer(state, state.listaccts, dict(USERS), 4.0)
    assert _answers(_restored(state)) == _answers(state)


def _kept_folders(**filters: list[str]) -> list[str]:
    state = state_for(mailboxes=filters)
    discovered(state, 1.0)
    item: Item[Any] = state.mailboxes[("alice", "a1@x")]
    call = mailboxes.FAMILY.plan(item, state, 0.0)
    call.keep(fixture("get_mailbox_status_list.official_items.json"), 2.0)
    assert item.answer is not None
    return [m.mailbox for m in item.answer.records]


@pytest.mark.parametrize(
    ("filters", "kept"),
    [
        ({"include_folders": ["INBOX", r"INBOX\.Sent"]}, ["INBOX", "INBOX.Sent"]),
        ({"exclude_folders": [r"INBOX\..*"]}, ["INBOX"]),
    ],
)
def test_one_folder_filter_alone_is_applied(filters: dict[str, list[str]], kept: list[str]) -> None:
    assert _kept_folders(**filters) == kept


@dataclass
class _Pair:
    user: str
    sender: str
    count: int


def test_a_row_has_at_least_two_fields_and_exactly_its_length() -> None:
    # Two written fields are a row (attrgetter of two names gives a tuple).
    rows = Fields(SenderSample, from_key={"user": "user", "window": "subject"})
    assert rows.wire == tuple[str, int]
    assert rows.out(SenderSample("bob", "b@x", "1h", 7)) == ("b@x", 7)
    # One would be a scalar, not a row.
    with pytest.raises(AssertionError):
        Fields(_Pair, from_key={"user": "user", "sender": "subject"})
    # A row of another length is refused, not cut or padded.
    with pytest.raises(ValueError, match="zip"):
        rows.into(["b@x", 7, 8], "bob", "1h")
    with pytest.raises(ValueError, match="zip"):
        rows.into(["b@x"], "bob", "1h")


def test_listaccts_asks_for_the_fields_it_reads_by_name() -> None:
    # A server's whole account list, every field of it, would be megabytes at each re-list.
    state = state_for()
    assert state.listaccts is not None
    call = discovery.FAMILY.plan(state.listaccts, state, 0.0)
    assert (call.function, call.subject, list(call.params)) == ("listaccts", "", ["want"])
    want = str(call.params["want"]).split(",")
    assert {"user", "suspended", "outgoing_mail_hold", "outgoing_mail_suspended"} <= set(want)


@pytest.mark.parametrize(
    ("function", "endpoint"),
    [("list_pops_for", "list_pops_for"), ("list_pops_with_disk", "uapi_cpanel")],
)
def test_the_address_call_names_its_user_for_the_log(function: str, endpoint: str) -> None:
    state = state_for(discovery={"function": function})
    discovered(state, 1.0)
    call = discovery.FAMILY.plan(state.pops["bob"], state, 0.0)
    assert (call.function, call.endpoint, call.subject) == (function, endpoint, "bob")


def test_disk_is_served_up_to_max_age_inclusive_past_an_older_user() -> None:
    # test_disk_samples.py has the rest of what disk samples are; here the edges: an answer
    # exactly max_age old is served, and a user whose answer is too old (listed first) does
    # not hide the users after it.
    state = state_for(discovery={"function": "list_pops_with_disk"}, mailboxes={"max_age": "100s"})
    assert state.listaccts is not None
    answer(state, state.listaccts, dict(USERS), 0.0)
    for user, at in (("alice", 0.0), ("bob", 20.0), ("carol", 30.0)):
        used = Mailbox(f"{user}@x", False, len(user), None)
        answer(state, state.pops[user], Addresses((used.address,), (used,)), at)
    served = discovery.FAMILY.serve(state, Served(120.0, 0.0, set()))
    assert served["disk"] == [
        DiskSample("bob", "bob@x", 3, None),
        DiskSample("carol", "carol@x", 5, None),
    ]


def test_what_a_good_mail_flow_answer_had_wrong_is_told_record_by_record() -> None:
    state = state_for(mail_flow={"enabled": True})
    discovered(state, 1.0)
    body = fixture("emailtrack_user_stats.official.json")
    good = body["data"]["records"][0]
    body["data"]["records"] += [
        {**good, "USER": "nobody-here", "SENDCOUNT": "lots"},
        {k: v for k, v in good.items() if k != "USER"},
    ]
    body["metadata"]["overflowed"] = 1
    call = mail_flow.FAMILY.plan(state.mail_flow["1h"], state, 1000.0)
    problems = call.keep(body, 2.0) or []
    assert [(p.reason, p.detail) for p in problems] == [
        ("protocol", "record refused: nobody-here.SENDCOUNT is not a whole number: 'lots'"),
        ("protocol", "record refused: record 2 has no 'USER'"),
        ("api", "partial answer: WHM cut the record list (overflowed)"),
    ]


def test_a_probe_counts_each_expired_answer_and_the_age_of_the_oldest_served() -> None:
    def item(answer: str | None, at: float, ok: bool = True) -> Item[str]:
        return Item(Kind.MAILBOX, "bob", answer or "", answer, answered_at=at, last_ok=ok)

    served = Served(now=100.0, fresh_since=99.5, named=set())
    items = [
        item("expired", 10.0),
        item("fresh", 99.75),
        item("also expired", 20.0),
        # Failed since: its expiry is the failure's, not slowness.
        item("expired, failed since", 30.0, ok=False),
        item(None, -math.inf),
    ]
    assert served.take(items, "f", max_age=60.0) == ["fresh"]
    assert served.expired == 2
    assert served.age == {"f": 0.25}
    assert dict(served.items) == {("f", "fresh"): 1, ("f", "kept"): 0, ("f", "missing"): 4}


def test_a_user_the_filters_leave_out_does_not_hide_the_next_in_the_same_window() -> None:
    state = state_for(mail_flow={"enabled": True, "windows": ["1h"]})
    discovered(state, 1.0)
    flows = {u: MailFlow(u, 1, 2, 3, 4, 5, 6, False, False) for u in ("nobody", "bob")}
    answer(state, state.mail_flow["1h"], flows, 1.0)
    served = mail_flow.FAMILY.serve(state, Served(2.0, 0.0, {"bob"}))
    assert served["mail_flow"] == [("1h", flows["bob"])]
