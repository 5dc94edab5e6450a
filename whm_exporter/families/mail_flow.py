"""Mail flow: emailtrack_user_stats, one call per window for the whole server (the spam signal's
first line, with the per-user totals): each user's sent, delivered, deferred and failed mail, and
the per-hour limits cPanel saw it trip. Config section ``mail_flow``."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from whm_exporter.collect.state import Item, Kind, TargetState
from whm_exporter.config import ModuleConfig, Window
from whm_exporter.families.base import Call, Family, Fields, Problems, Served, span
from whm_exporter.series import Family as MetricFamily
from whm_exporter.snapshot import LimitSample, Snapshot
from whm_exporter.whm import parse
from whm_exporter.whm.errors import WHMError

log = logging.getLogger("whm_exporter.collect")

# A kept answer: one row per user, MailFlow's fields in order.
ROWS: Fields[parse.MailFlow] = Fields(parse.MailFlow)

# The limit label's values: cPanel's two per-hour limits.
MAX_EMAILS = "max_emails_per_hour"
DEFER_FAIL = "max_defer_fail"
# The targets' states whose log said a limit flag was an odd text (the state names no target:
# the line says the user and the text).
_TOLD: weakref.WeakSet[TargetState] = weakref.WeakSet()

# emailtrack_user_stats counters: (metric, HELP, MailFlow field).
COUNTERS = (
    ("whm_user_mail_sent_messages", "Messages the user sent in the window (SENDCOUNT).", "sent"),
    (
        "whm_user_mail_delivered",
        "Successful deliveries in the window, one per recipient (SUCCESSCOUNT).",
        "delivered",
    ),
    ("whm_user_mail_deferrals", "Deferral events in the window (DEFERCOUNT).", "deferrals"),
    (
        "whm_user_mail_failures",
        "Failed deliveries in the window, one per recipient (FAILCOUNT).",
        "failures",
    ),
    (
        "whm_user_mail_defer_failures",
        "Messages deferred and then failed in the window (DEFERFAILCOUNT).",
        "defer_failures",
    ),
    ("whm_user_mail_sent_bytes", "Bytes the user sent in the window (TOTALSIZE).", "sent_bytes"),
)


class MailFlow(Family):
    section = "mail_flow"
    kinds = (Kind.MAIL_FLOW,)
    exposition_rank = 3

    def windows(self, module: ModuleConfig) -> tuple[Window, ...]:
        return module.mail_flow.windows

    def plan(self, item: Item[Any], state: TargetState, wall: float) -> Call:
        module = state.module
        params = span(module, self.windows(module), item.subject, wall, ("starttime", "endtime"))
        delivery = module.mail_flow.delivery_type
        if delivery != "all":
            params["deliverytype"] = delivery
        return Call(
            "emailtrack_user_stats",
            item.subject,
            params,
            lambda b, now: _keep(state, item, b, now),
        )

    def items(self, state: TargetState) -> Iterator[Item[Any]]:
        return iter(state.mail_flow.values())

    def find(self, state: TargetState, kind: Kind, user: str, subject: str) -> Item[Any] | None:
        return state.mail_flow.get(subject)

    def wire_type(self, kind: Kind) -> Any:
        return list[ROWS.wire]  # type: ignore[name-defined]

    def dump(self, kind: Kind, answer: dict[str, parse.MailFlow]) -> Any:
        return [ROWS.out(f) for f in answer.values()]

    def load(self, kind: Kind, value: Any, user: str, subject: str) -> Any:
        return {r[0]: ROWS.into(r) for r in value}

    def serve(self, state: TargetState, served: Served) -> Mapping[str, Any]:
        module = state.module
        flows: list[tuple[str, parse.MailFlow]] = []
        limits: dict[str, tuple[LimitSample, LimitSample]] = {}
        # cPanel's limits are per hour: the flags come from the shortest window alone (a longer
        # one would keep a limit "reached" for a day), 0 for users with mail only in a longer
        # window; none at all while the shortest has no answer to serve.
        windows = sorted(state.mail_flow.values(), key=_window_seconds(module))
        flags_served = False
        for flow in windows:
            for records in served.take([flow], Kind.MAIL_FLOW.value, module.mail_flow.max_age):
                shortest = flow is windows[0]
                flags_served = flags_served or shortest
                for r in records.values():
                    if r.user not in served.named:
                        continue
                    flows.append((flow.subject, r))
                    if shortest:
                        limits[r.user] = (
                            LimitSample(
                                r.user, MAX_EMAILS, r.reached_max_emails, r.max_emails_marker
                            ),
                            LimitSample(
                                r.user, DEFER_FAIL, r.reached_max_defer_fail, r.defer_fail_marker
                            ),
                        )
                    elif flags_served and r.user not in limits:
                        limits[r.user] = (
                            LimitSample(r.user, MAX_EMAILS, False),
                            LimitSample(r.user, DEFER_FAIL, False),
                        )
        return {
            "mail_flow": sorted(flows, key=lambda f: (f[1].user, f[0])),
            "limits": [s for user in sorted(limits) for s in limits[user]],
        }

    def render(self, s: Snapshot) -> list[MetricFamily]:
        labels = [(f.user, window) for window, f in s.mail_flow]
        return [
            *(
                MetricFamily(
                    name,
                    text,
                    ("user", "window"),
                    [(k, getattr(f, field)) for k, (_, f) in zip(labels, s.mail_flow, strict=True)],
                )
                for name, text, field in COUNTERS
            ),
            MetricFamily(
                "whm_user_mail_limit_reached",
                "1 when cPanel's per-hour limit tripped for the user (REACHED_MAXEMAILS,"
                " REACHED_MAXDEFERFAIL of emailtrack_user_stats, shortest window).",
                ("user", "limit"),
                [((x.user, x.limit), int(x.reached)) for x in s.limits],
            ),
            MetricFamily(
                "whm_user_mail_limit_marker_messages",
                "Messages the user's domain sent (max_emails_per_hour), or its deferrals and"
                " failures (max_defer_fail), this clock hour, from the text of cPanel's limit"
                " marker in REACHED_* (150/150, 7/5 (58%)); cPanel clears the marker at"
                " each full hour.",
                ("user", "limit"),
                [((x.user, x.limit), x.marker[0]) for x in s.limits if x.marker is not None],
            ),
            MetricFamily(
                "whm_user_mail_limit_marker_threshold_messages",
                "The hourly cap (max_emails_per_hour), or the deferrals and failures that let"
                " the share trigger (max_defer_fail), from the text of cPanel's limit marker;"
                " cPanel clears the marker at each full hour.",
                ("user", "limit"),
                [((x.user, x.limit), x.marker[1]) for x in s.limits if x.marker is not None],
            ),
        ]


def _keep(state: TargetState, item: Item[Any], body: object, now: float) -> Problems:
    answer = parse.mail_flow(body)
    if answer.odd_markers and state not in _TOLD:
        # Taken as reached; said once per target, for whoever wonders what cPanel wrote.
        _TOLD.add(state)
        user, text = answer.odd_markers[0]
        log.debug(
            "a limit flag of emailtrack_user_stats is neither 0, 1 nor cPanel's marker text;"
            " taken as reached",
            extra={"user": user, "text": text, "others": len(answer.odd_markers) - 1},
        )
    state.answered(item, {r.user: r for r in answer.records}, now)
    problems = [WHMError("protocol", f"record refused: {bad}") for bad in answer.bad_records]
    if answer.overflowed:
        # emailtrack_user_stats marks a list it cut short: the users beyond it are missing.
        problems.append(WHMError("api", "partial answer: WHM cut the record list (overflowed)"))
    return problems


def _window_seconds(module: ModuleConfig) -> Callable[[Item[Any]], float]:
    seconds = {w.label: w.seconds for w in module.mail_flow.windows}
    return lambda item: seconds[item.subject]


FAMILY = MailFlow()
