"""Per-user totals: get_unique_sender_recipient_count_per_user, one call per window for the whole
server: how many unique remote recipients each cPanel user's senders reached. The spam signal's
first line: they heat the users at or above ``priority_threshold`` and vouch for the breakdowns
of quiet ones. Config section ``unique_recipients`` (``per_user_totals``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from whm_exporter.collect.state import Item, Kind, TargetState
from whm_exporter.config import ModuleConfig, Window
from whm_exporter.families.base import Call, Family, Served, span
from whm_exporter.series import Family as MetricFamily
from whm_exporter.snapshot import Snapshot, UserSample
from whm_exporter.whm import parse


class Totals(Family):
    section = "unique_recipients"
    kinds = (Kind.TOTALS,)
    exposition_rank = 2

    def windows(self, module: ModuleConfig) -> tuple[Window, ...]:
        return module.unique_recipients.windows

    def plan(self, item: Item[Any], state: TargetState, wall: float) -> Call:
        return Call(
            "get_unique_sender_recipient_count_per_user",
            item.subject,
            span(state.module, self.windows(state.module), item.subject, wall),
            lambda b, now: state.answered(
                item, {t.user: t.count for t in parse.user_totals(b)}, now
            ),
        )

    def items(self, state: TargetState) -> Iterator[Item[Any]]:
        return iter(state.totals.values())

    def find(self, state: TargetState, kind: Kind, user: str, subject: str) -> Item[Any] | None:
        return state.totals.get(subject)

    # The answer is kept as it is: user -> count.
    def wire_type(self, kind: Kind) -> Any:
        return dict[str, int]

    def dump(self, kind: Kind, answer: dict[str, int]) -> Any:
        return answer

    def load(self, kind: Kind, value: Any, user: str, subject: str) -> Any:
        return value

    def serve(self, state: TargetState, served: Served) -> Mapping[str, Any]:
        totals: list[UserSample] = []
        recipients = state.module.unique_recipients
        if recipients.enabled:
            for item in state.totals.values():
                for counts in served.take([item], Kind.TOTALS.value, recipients.max_age):
                    totals += [
                        UserSample(u, item.subject, n)
                        for u, n in counts.items()
                        if u in served.named
                    ]
        return {"user_totals": sorted(totals, key=lambda t: (t.user, t.window))}

    def render(self, s: Snapshot) -> list[MetricFamily]:
        return [
            MetricFamily(
                "whm_user_unique_recipients",
                "Unique remote recipients of the cPanel user's senders in the window.",
                ("user", "window"),
                [((u.user, u.window), u.count) for u in s.user_totals],
            )
        ]


FAMILY = Totals()
