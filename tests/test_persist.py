"""A target's state to a document and back (collect/persist.py): a state collected from the
simulator comes back as it was (answers, lanes, hot users, what the schedule asks next), its
answers' ages count the downtime, and a document that does not fit is refused whole."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from conftest import TOKEN, WHM, Running, loaded, module

from whm_exporter.collect import persist, schedule
from whm_exporter.collect.state import Item, Kind, Stage, TargetState
from whm_exporter.config import ModuleConfig, shapes_state, state_identity
from whm_exporter.probe import snapshot
from whm_exporter.simulator import Dataset

DATASET = Dataset(accounts=64, users=16, folders=3, nobody_sends=True)
SERVER = ("https", "whm1.example.com", 2087)
MAILBOX = "get_mailbox_status_list"


def _items(state: TargetState) -> list[Item[Any]]:
    listaccts = [state.listaccts] if state.listaccts is not None else []
    return [
        *listaccts,
        *state.pops.values(),
        *state.server_wide,
        *state.senders.values(),
        *state.mailboxes.values(),
    ]


def describe(state: TargetState) -> dict[str, Any]:
    """Everything the scheduler and the probe read of a state."""

    def key(item: Item[Any]) -> tuple[str, str, str]:
        return (item.kind.value, item.user, item.subject)

    return {
        "accounts": state.accounts,
        "mailbox_function": state.mailbox_function,
        "lanes": {
            f"{k.value} {s.value}": [key(i) for i in lane] for (k, s), lane in state.lanes.items()
        },
        "hot": [key(i) for i in state.hot],
        "outside": sorted(key(i) for i in state.outside),
        "listed": state.listed,
        "early": state.listaccts is not None and state.listaccts.early,
        "in_flight": len(state.in_flight),
        "items": {
            key(i): (i.answer, i.answered_at, i.attempted_at, i.last_ok, i.basis)
            for i in _items(state)
        },
    }


def round_trip(
    state: TargetState, module_config: ModuleConfig, now: float, wall: float
) -> TargetState:
    taken = persist.capture(state, "id", wall - now)
    document = persist.parse(persist.dump(taken, "t", wall))
    return persist.restore(document, module_config, state.explicit, now, wall)


async def collected(
    start_whm: Any, start_exporter: Any, **overrides: Any
) -> tuple[Running, TargetState]:
    whm: WHM = await start_whm(DATASET)
    running: Running = await start_exporter(module(whm.url, **overrides))
    await running.probe()
    await running.exporter.targets["t"].collection.settled()
    # A second round: kept answers, refreshed ones, breakdowns the totals vouch for.
    await running.probe()
    await running.exporter.targets["t"].collection.settled()
    return running, running.exporter.targets["t"].state


async def test_a_collected_state_comes_back_as_it_was(start_whm, start_exporter) -> None:
    _, state = await collected(
        start_whm,
        start_exporter,
        discovery={"function": "list_pops_with_disk"},
        unique_recipients={"windows": ["1h", "24h"], "priority_threshold": 50},
        mailboxes={"refresh": "0s"},
    )
    assert all(i.answer is not None for i in state.mailboxes.values())
    assert any(i.basis is not None for i in state.senders.values())
    # nobody sends: a user outside the inventory, with a breakdown of its own, and listaccts'
    # users beyond those kept (a suspended one).
    assert "nobody" in {i.user for i in state.outside}
    assert state.listed > set(state.accounts)
    # New totals that show a user far above the threshold: its breakdowns go first.
    totals = state.totals["1h"]
    at = running_clock(state)
    heavy = DATASET.user_names[1]
    state.start(totals, at, urgent=True)
    state.answered(totals, {**(totals.answer or {}), heavy: 10_000}, at + 0.5)
    state.finish(totals, True)
    assert heavy in {i.user for i in state.hot}
    module_config = state.module
    # Written and read at once (wall = monotonic: times come back to the bit; the downtime
    # has its own test).
    now = running_clock(state)
    back = round_trip(state, module_config, now, now)
    expected = describe(state)
    # Only the last totals are kept: a breakdown read before them comes back without the
    # total it was read with, and is asked again rather than vouched for.
    for (user, window), item in state.senders.items():
        if item.answered_at < state.totals[window].answered_at:
            key = (Kind.SENDERS.value, user, window)
            expected["items"][key] = (*expected["items"][key][:4], None)
    assert describe(back) == expected
    # The scheduler asks the same items in the same order of both, refreshing included.
    refresh = schedule.refresh_of(module_config)
    later = running_clock(state) + 3600
    for s in (state, back):
        s.new_epoch(later)
    assert _order(state, later, refresh) == _order(back, later, refresh)


def running_clock(state: TargetState) -> float:
    """A monotonic time after every time in the state."""
    return max(max(i.attempted_at, i.answered_at) for i in _items(state)) + 1


def _order(state: TargetState, now: float, refresh: Any) -> list[tuple[str, str, str, bool]]:
    asked = []
    while (picked := schedule.next_item(state, now, refresh)) is not None:
        item, urgent = picked
        state.start(item, now, urgent=urgent)
        state.finish(item, False)
        asked.append((item.kind.value, item.user, item.subject, urgent))
    return asked


async def test_ages_count_the_downtime(start_whm, start_exporter) -> None:
    _, state = await collected(start_whm, start_exporter)
    now = running_clock(state)
    taken = persist.capture(state, "id", 5000.0 - now)
    # Written at wall 5000 (monotonic `now`), read 300 s of wall time later on a machine whose
    # monotonic clock restarted at 0.
    document = persist.parse(persist.dump(taken, "t", 5000.0))
    back = persist.restore(document, state.module, {}, 7.0, 5300.0)
    before = snapshot(state, now, 0, 10, pending=False, look=True)
    after = snapshot(back, 7.0, 0, 10, pending=False, look=True)
    assert before.data_age[MAILBOX] > 0
    assert after.data_age[MAILBOX] == pytest.approx(before.data_age[MAILBOX] + 300)
    assert sorted(after.mailboxes, key=repr) == sorted(before.mailboxes, key=repr)
    assert after.discovery_complete


async def test_answers_past_max_age_are_asked_as_new(start_whm, start_exporter) -> None:
    _, state = await collected(start_whm, start_exporter, mailboxes={"max_age": "10m"})
    now = running_clock(state)
    taken = persist.capture(state, "id", -now)
    document = persist.parse(persist.dump(taken, "t", 0.0))
    back = persist.restore(document, state.module, {}, 0.0, 900.0)
    assert all(i.answer is None for i in back.mailboxes.values())
    assert len(back.lanes[(Kind.MAILBOX, Stage.NEW)]) == len(state.mailboxes)
    # Discovery has no max_age: the inventory is whole.
    assert back.accounts == state.accounts
    assert all(i.answer is not None for i in back.pops.values())


async def test_a_call_in_flight_is_kept_as_it_was_before_the_call(
    start_whm, start_exporter
) -> None:
    _, state = await collected(start_whm, start_exporter)
    now = running_clock(state)
    item = next(iter(state.mailboxes.values()))
    before = (item.answer, item.answered_at, item.attempted_at)
    state.start(item, now, urgent=False)
    taken = persist.capture(state, "id", 0.0)
    state.finish(item, False, abandoned=True)
    back = persist.restore(persist.parse(persist.dump(taken, "t", now)), state.module, {}, now, now)
    found = back.mailboxes[(item.user, item.subject)]
    assert (found.answer, found.answered_at, found.attempted_at) == before
    assert not found.in_flight
    # Live, the abandoned call went back at the end of its lane; restored, the lane is in the
    # order of the attempts, which is the order the scheduler reads it in.
    live, restored = describe(state), describe(back)
    assert {k: sorted(v) for k, v in live.pop("lanes").items()} == {
        k: sorted(v) for k, v in restored.pop("lanes").items()
    }
    assert live == restored
    lane = back.lanes[(Kind.MAILBOX, Stage.KEPT)]
    assert [i.attempted_at for i in lane] == sorted(i.attempted_at for i in lane)


async def test_a_document_encoded_in_chunks_is_the_same_document(
    start_whm, start_exporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, state = await collected(start_whm, start_exporter)
    taken = persist.capture(state, "id", 0.0)
    whole = persist.dump(taken, "t", 0.0)
    assert len(taken.rows) > 3
    monkeypatch.setattr(persist, "CHUNK", 3)
    assert persist.dump(taken, "t", 0.0) == whole
    assert orjson.loads(whole)["mailbox"]


async def test_the_token_is_not_in_the_document(start_whm, start_exporter) -> None:
    _, state = await collected(start_whm, start_exporter)
    taken = persist.capture(state, "id", 0.0)
    assert TOKEN.encode() not in persist.dump(taken, "t", 0.0)


def _document(**changes: Any) -> bytes:
    base: dict[str, Any] = {
        "target": "t",
        "identity": "id",
        "written": 1.0,
        "mailbox_function": None,
        **{kind.value: [] for kind in Kind},
    }
    base.update(changes)
    return orjson.dumps(base)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"[]",
        b'{"target": "t"',
        _document(extra=1),
        _document(mailbox=[["u", "u@x", 1.0, 1.0, True, [0, [["INBOX", "3", 10]]]]]),
        _document(mailbox=[["u", "u@x", 1.0, 1.0, 1, None]]),
        _document(listaccts=[["", "", None, None, True, []]]),
    ],
)
def test_a_document_of_another_shape_is_refused(payload: bytes) -> None:
    with pytest.raises(persist.Unusable):
        persist.parse(payload)


def _module(**overrides: Any) -> ModuleConfig:
    return loaded(module("https://whm1.example.com:2087", **overrides)).config.modules["default"]


@pytest.mark.parametrize(
    "rows",
    [
        # A mailbox of a user the inventory does not have.
        {"mailbox": [["ghost", "ghost@x", 1.0, 1.0, True, [0, []]]]},
        # An answer without the time it came.
        {"listaccts": [["", "", 1.0, None, True, [[], []]]]},
        # Addresses of a user listaccts did not name.
        {"list_pops_for": [["ghost", "", 1.0, 1.0, True, [[], []]]]},
    ],
)
def test_a_document_that_does_not_fit_the_inventory_is_refused(rows: dict[str, Any]) -> None:
    document = persist.parse(_document(**rows))
    with pytest.raises(persist.Unusable):
        persist.restore(document, _module(), {}, 10.0, 10.0)


def test_identity_is_what_changes_what_is_asked_or_how_it_is_labelled() -> None:
    base = state_identity(SERVER, _module(), {})
    same = [
        state_identity(SERVER, _module(timeout="5s", max_concurrency=2, load_budget=0.5), {}),
        state_identity(SERVER, _module(token="another"), {}),
        state_identity(SERVER, _module(tls={"insecure_skip_verify": True}), {}),
        # A section's own call limits are a timeout and an answer limit too.
        state_identity(
            SERVER,
            _module(
                mail_queue={"request_timeout": "5m", "max_response_bytes": 2**30},
                dns_auth={"request_timeout": "10s"},
            ),
            {},
        ),
    ]
    assert same == [base] * len(same)
    assert shapes_state(_module(), _module(mail_queue={"request_timeout": "5m"}))
    assert not shapes_state(_module(), _module(mail_queue={"max_senders": 5}))
    different = [
        state_identity(("https", "whm2.example.com", 2087), _module(), {}),
        state_identity(("https", "whm1.example.com", 2088), _module(), {}),
        state_identity(SERVER, _module(username="reseller"), {}),
        state_identity(SERVER, _module(), {"bob": ("bob@example.com",)}),
        state_identity(SERVER, _module(discovery={"include_users": ["a.*"]}), {}),
        state_identity(SERVER, _module(mailboxes={"exclude_folders": ["Trash"]}), {}),
        state_identity(SERVER, _module(unique_recipients={"windows": ["24h"]}), {}),
        state_identity(SERVER, _module(mail_flow={"delivery_type": "remote"}), {}),
        state_identity(SERVER, _module(mail_queue={"age_buckets": ["2h"]}), {}),
        state_identity(SERVER, _module(dns_auth={"domains_per_call": 10}), {}),
    ]
    assert base not in different
    assert len(set(different)) == len(different)
    # The accounts of an explicit user in another order are the same items.
    assert state_identity(SERVER, _module(), {"bob": ("a@x", "b@x")}) == state_identity(
        SERVER, _module(), {"bob": ("b@x", "a@x")}
    )
    assert TOKEN not in base
