"""Mailboxes: get_mailbox_status_list (or, on a server without it, get_mailbox_status), one call
per email account: the messages and size of each of its folders. Which function a server has is
learned per target (``function: auto``) and kept. Config section ``mailboxes``."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from itertools import chain
from typing import Any

from whm_exporter.collect.state import Item, Kept, Kind, TargetState
from whm_exporter.families.base import Call, Fields, KeptFamily, Served
from whm_exporter.selection import selected
from whm_exporter.series import Family as MetricFamily
from whm_exporter.series import Lazy
from whm_exporter.snapshot import MailboxSample, Snapshot
from whm_exporter.whm import parse
from whm_exporter.whm.errors import WHMError

MAILBOX_LIST = "get_mailbox_status_list"
MAILBOX_OBJECT = "get_mailbox_status"
_PARSERS: dict[str, Callable[[Any], list[parse.Folder]]] = {
    MAILBOX_LIST: parse.mailbox_status_list,
    MAILBOX_OBJECT: parse.mailbox_status,
}
# A kept answer: series dropped, then each folder, messages and vsize (user and account are the
# item's; folder names repeat across every account: one string each).
ROWS: Fields[MailboxSample] = Fields(
    MailboxSample, from_key={"user": "user", "account": "subject"}, intern=("mailbox",)
)
METRICS = ("whm_mailbox_messages", "whm_mailbox_size_bytes")


def current_function(state: TargetState) -> str:
    """The mailbox function this target asks: learned, configured, or the list form first."""
    return state.mailbox_function or MAILBOX_LIST


class Mailboxes(KeptFamily):
    rows = ROWS
    section = "mailboxes"
    kinds = (Kind.MAILBOX,)
    exposition_rank = 0
    first_rank = 1

    def plan(self, item: Item[Any], state: TargetState, wall: float) -> Call:
        function = current_function(state)
        return Call(
            function,
            item.subject,
            {"account": item.subject},
            lambda b, now: _keep(state, item, function, b, now),
        )

    def fallback(self, state: TargetState, call: Call, err: WHMError) -> bool:
        """Learn from a server that lacks the list form (``function: auto``): the object form
        from now on, for this target."""
        auto = state.module.mailboxes.function == "auto"
        if auto and err.unknown_function and call.function == MAILBOX_LIST:
            state.mailbox_function = MAILBOX_OBJECT
            return True
        return False

    def items(self, state: TargetState) -> Iterator[Item[Any]]:
        return iter(state.mailboxes.values())

    def find(self, state: TargetState, kind: Kind, user: str, subject: str) -> Item[Any] | None:
        return state.mailboxes.get((user, subject))

    def serve(self, state: TargetState, served: Served) -> Mapping[str, Any]:
        module = state.module
        if not module.mailboxes.enabled:
            return {"mailboxes": []}
        found: list[Kept[MailboxSample]] = served.take(
            state.mailboxes.values(), current_function(state), module.mailboxes.max_age
        )
        if dropped := sum(k.dropped for k in found):
            for metric in METRICS:
                served.dropped[metric] = dropped
        return {"mailboxes": list(chain.from_iterable(k.records for k in found))}

    def render(self, s: Snapshot) -> list[MetricFamily]:
        messages, size = METRICS
        labels = ("user", "account", "mailbox")
        return [
            MetricFamily(
                messages,
                "Messages in one mailbox folder.",
                labels,
                Lazy(lambda: (((m.user, m.account, m.mailbox), m.messages) for m in s.mailboxes)),
            ),
            MetricFamily(
                size,
                "Virtual size of one mailbox folder (vsize), in bytes.",
                labels,
                Lazy(lambda: (((m.user, m.account, m.mailbox), m.vsize) for m in s.mailboxes)),
            ),
        ]


def _keep(state: TargetState, item: Item[Any], function: str, body: object, now: float) -> None:
    cfg = state.module.mailboxes
    folders = _PARSERS[function](body)
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


FAMILY = Mailboxes()
