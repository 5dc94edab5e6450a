"""What each kind of item asks WHM, and what is kept of the answer.

A :class:`Call` names the function and its parameters; its ``keep`` parses the decoded body,
applies the module's filters and limits, and stores the result in the state. Parsing errors
leave as :class:`WHMError` (reason ``protocol``): the runner records them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from whm_exporter.collect.state import Addresses, Item, Kept, Kind, TargetState
from whm_exporter.selection import selected, top_senders
from whm_exporter.snapshot import MailboxSample, SenderSample
from whm_exporter.whm import parse
from whm_exporter.whm.errors import WHMError

MAILBOX_LIST = "get_mailbox_status_list"
MAILBOX_OBJECT = "get_mailbox_status"
_MAILBOX_PARSERS: dict[str, Callable[[Any], list[parse.Folder]]] = {
    MAILBOX_LIST: parse.mailbox_status_list,
    MAILBOX_OBJECT: parse.mailbox_status,
}
R = TypeVar("R")


# What a good answer still had wrong (records refused, a list cut short): reported, not fatal.
Problems = list[WHMError]


@dataclass(frozen=True, slots=True)
class Call:
    # The name metrics and logs use: the WHM function, or the UAPI one behind uapi_cpanel.
    function: str
    # What the debug page and the log name: an address, "user window", or nothing.
    subject: str
    params: Mapping[str, str | int]
    keep: Callable[[Any, float], Problems | None]
    # The WHM API 1 function in the URL, when it is not ``function``.
    whm_function: str | None = None

    @property
    def endpoint(self) -> str:
        return self.whm_function or self.function


def time_range(
    state: TargetState,
    window: str,
    wall: float,
    names: tuple[str, str] = ("start_time", "end_time"),
) -> dict[str, str | int]:
    """Start and end of a window. WHM refuses an end ahead of its own clock
    (get_unique_recipient_count_per_sender_for_user: "The end_time parameter cannot be greater
    than the current time"): stay ``end_time_lag`` behind ours, for every windowed call."""
    module = state.module
    windows = (*module.unique_recipients.windows, *module.mail_flow.windows)
    seconds = next(w.seconds for w in windows if w.label == window)
    end = int(wall - module.unique_recipients.end_time_lag)
    return {names[0]: end - int(seconds), names[1]: end}


def plan(item: Item[Any], state: TargetState, wall: float) -> Call:
    """The call that answers ``item`` now (``wall``: the time of day, for windows)."""
    match item.kind:
        case Kind.LISTACCTS:
            want = "user,suspended,outgoing_mail_hold,outgoing_mail_suspended"
            return Call("listaccts", "", {"want": want}, lambda b, now: _listed(state, b, now))
        case Kind.POPS if state.module.discovery.function == "list_pops_with_disk":
            return Call(
                "list_pops_with_disk",
                item.user,
                {
                    "cpanel.user": item.user,
                    "cpanel.module": "Email",
                    "cpanel.function": "list_pops_with_disk",
                },
                lambda b, now: _with_disk(state, item, b, now),
                whm_function="uapi_cpanel",
            )
        case Kind.POPS:
            return Call(
                "list_pops_for",
                item.user,
                {"user": item.user},
                lambda b, now: state.answered(item, Addresses(tuple(sorted(parse.pops(b)))), now),
            )
        case Kind.MAIL_FLOW:
            params = time_range(state, item.subject, wall, ("starttime", "endtime"))
            delivery = state.module.mail_flow.delivery_type
            if delivery != "all":
                params["deliverytype"] = delivery
            return Call(
                "emailtrack_user_stats",
                item.subject,
                params,
                lambda b, now: _mail_flow(state, item, b, now),
            )
        case Kind.TOTALS:
            return Call(
                "get_unique_sender_recipient_count_per_user",
                item.subject,
                time_range(state, item.subject, wall),
                lambda b, now: state.answered(
                    item, {t.user: t.count for t in parse.user_totals(b)}, now
                ),
            )
        case Kind.SENDERS:
            return Call(
                "get_unique_recipient_count_per_sender_for_user",
                f"{item.user} {item.subject}",
                {"user": item.user, **time_range(state, item.subject, wall)},
                lambda b, now: _senders(state, item, b, now),
            )
        case Kind.MAILBOX:
            function = state.mailbox_function or MAILBOX_LIST
            return Call(
                function,
                item.subject,
                {"account": item.subject},
                lambda b, now: _mailbox(state, item, function, b, now),
            )
    raise AssertionError(f"no call for {item.kind}")


def fallback(state: TargetState, call: Call, err: WHMError) -> bool:
    """Learn from a server that lacks the mailbox list form (``function: auto``): the object
    form from now on, for this target. True when the call should be made again."""
    auto = state.module.mailboxes.function == "auto"
    if auto and err.unknown_function and call.function == MAILBOX_LIST:
        state.mailbox_function = MAILBOX_OBJECT
        return True
    return False


def _listed(state: TargetState, body: object, now: float) -> None:
    users = {a.user: a for a in parse.accounts(body)}
    assert state.listaccts is not None
    state.answered(state.listaccts, users, now)


def _with_disk(state: TargetState, item: Item[Any], body: object, now: float) -> None:
    mailboxes = parse.pops_with_disk(body)
    addresses = tuple(sorted(m.address for m in mailboxes if not m.main))
    state.answered(item, Addresses(addresses, tuple(mailboxes)), now)


def _mail_flow(state: TargetState, item: Item[Any], body: object, now: float) -> Problems:
    answer = parse.mail_flow(body)
    state.answered(item, {r.user: r for r in answer.records}, now)
    problems = [WHMError("protocol", f"record refused: {bad}") for bad in answer.bad_records]
    if answer.overflowed:
        # emailtrack_user_stats marks a list it cut short: the users beyond it are missing.
        problems.append(WHMError("api", "partial answer: WHM cut the record list (overflowed)"))
    return problems


def _senders(state: TargetState, item: Item[Any], body: object, now: float) -> None:
    cfg = state.module.unique_recipients
    kept, dropped = top_senders(parse.sender_counts(body), cfg.min_count, cfg.max_senders_per_user)
    records = tuple(SenderSample(item.user, c.sender, item.subject, c.count) for c in kept)
    state.answered(item, Kept(records, dropped), now)


def _mailbox(state: TargetState, item: Item[Any], function: str, body: object, now: float) -> None:
    cfg = state.module.mailboxes
    folders = _MAILBOX_PARSERS[function](body)
    # The answer proves the server has this function: keep using it.
    state.mailbox_function = function
    filtered = cfg.include_folders or cfg.exclude_folders
    # Folder names repeat across every account: one string each, not one per answer.
    kept = [
        MailboxSample(item.user, item.subject, sys.intern(f.name), f.messages, f.vsize)
        for f in folders
        if not filtered or selected(f.name, cfg.include_folders, cfg.exclude_folders)
    ]
    state.answered(item, Kept(tuple(kept), len(folders) - len(kept)), now)
