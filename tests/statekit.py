"""What the schedule and state tests share: a target's state built through its own API (no
exporter, no WHM), answers and failures given at chosen times, and the order in which the
schedule hands items out. Used by test_schedule.py, test_state.py, test_probe.py and
test_golden.py."""

from __future__ import annotations

from typing import Any

from conftest import loaded

from whm_exporter.collect import schedule
from whm_exporter.collect.state import Addresses, Item, Kind, TargetState
from whm_exporter.families.mailboxes import MAILBOX_LIST
from whm_exporter.whm.parse import Account

USERS = {u: Account(u, suspended=False) for u in ("alice", "bob", "carol")}
POPS = {"alice": ("a1@x", "a2@x"), "bob": ("b1@x",), "carol": ("c1@x",)}
# Per-user totals in which every user sends a little: none of them is hot, and no breakdown is
# known from the totals alone (a user absent from them sent nothing: see the tests of _confirm).
SENDING = {"alice": 5, "bob": 3, "carol": 2}


def state_for(
    explicit: dict[str, tuple[str, ...]] | None = None, *, learned: bool = True, **module: Any
) -> TargetState:
    """A target's state; ``learned``: the mailbox function is known (no one-at-a-time start).
    Mail flow, the server settings, the logins, the queue and the mail DNS are off unless
    asked: most of these tests are about the other items."""
    module.setdefault("mail_flow", {"enabled": False})
    module.setdefault("server_settings", {"enabled": False})
    module.setdefault("logins", {"enabled": False})
    module.setdefault("mail_queue", {"enabled": False})
    module.setdefault("dns_auth", {"enabled": False})
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
