"""Senders: get_unique_recipient_count_per_sender_for_user, one call per user and window: how
many unique remote recipients each of a user's senders reached. Asked first for the users the
server-wide answers show hot. Config section ``unique_recipients``."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from itertools import chain
from typing import Any

from whm_exporter.collect.state import Item, Kept, Kind, TargetState
from whm_exporter.config import ModuleConfig, Window
from whm_exporter.families.base import Call, Fields, KeptFamily, Served, span
from whm_exporter.selection import top_senders
from whm_exporter.series import Family as MetricFamily
from whm_exporter.series import Lazy
from whm_exporter.snapshot import SenderSample, Snapshot
from whm_exporter.whm import parse

# A kept answer: series dropped, then each sender and count (user and window are the item's).
ROWS: Fields[SenderSample] = Fields(SenderSample, from_key={"user": "user", "window": "subject"})
METRIC = "whm_sender_unique_recipients"


class Senders(KeptFamily):
    rows = ROWS
    section = "unique_recipients"
    kinds = (Kind.SENDERS,)
    exposition_rank = 1
    first_rank = 2

    def windows(self, module: ModuleConfig) -> tuple[Window, ...]:
        return module.unique_recipients.windows

    def plan(self, item: Item[Any], state: TargetState, wall: float) -> Call:
        return Call(
            "get_unique_recipient_count_per_sender_for_user",
            f"{item.user} {item.subject}",
            {
                "user": item.user,
                **span(state.module, self.windows(state.module), item.subject, wall),
            },
            lambda b, now: _keep(state, item, b, now),
        )

    def items(self, state: TargetState) -> Iterator[Item[Any]]:
        return iter(state.senders.values())

    def find(self, state: TargetState, kind: Kind, user: str, subject: str) -> Item[Any] | None:
        return state.senders.get((user, subject))

    def restored_outside(self, state: TargetState, kind: Kind, user: str, subject: str) -> None:
        if user not in state.accounts:
            # A user outside the inventory the server-wide answers named (nobody, say): its
            # breakdown's item, made as they make it (hot, if it is, once they are replayed).
            state.heat([user], [subject], -math.inf)

    def serve(self, state: TargetState, served: Served) -> Mapping[str, Any]:
        recipients = state.module.unique_recipients
        if not recipients.enabled:
            return {"senders": []}
        # An outsider's breakdown counts only once answered: WHM may well refuse it (nobody).
        items = (i for i in state.senders.values() if not i.outside or i.answer is not None)
        senders: list[Kept[SenderSample]] = served.take(
            items, Kind.SENDERS.value, recipients.max_age
        )
        if dropped := sum(k.dropped for k in senders):
            served.dropped[METRIC] = dropped
        return {"senders": list(chain.from_iterable(k.records for k in senders))}

    def render(self, s: Snapshot) -> list[MetricFamily]:
        return [
            MetricFamily(
                METRIC,
                "Unique remote recipients the sender reached in the window.",
                ("user", "sender", "window"),
                Lazy(lambda: (((r.user, r.sender, r.window), r.count) for r in s.senders)),
            )
        ]


def _keep(state: TargetState, item: Item[Any], body: object, now: float) -> None:
    cfg = state.module.unique_recipients
    kept, dropped = top_senders(parse.sender_counts(body), cfg.min_count, cfg.max_senders_per_user)
    records = tuple(SenderSample(item.user, c.sender, item.subject, c.count) for c in kept)
    state.answered(item, Kept(records, dropped), now)


FAMILY = Senders()
