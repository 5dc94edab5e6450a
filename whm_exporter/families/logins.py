"""Logins: cPHulk, cPanel's brute-force protection, one call per function: whether it is on
(cphulk_status), the failed logins it holds (get_cphulk_failed_logins: by service, and the users
or addresses with the most), and what it blocks now (get_cphulk_user_brutes,
get_cphulk_brutes, get_cphulk_excessive_brutes). Brute force on mail passwords comes before a
compromised account sends. cPHulk lists only rows not yet expired, one per failure or block:
the figures are of now, counts of rows, not counters. No address a login came from becomes a
label (unbounded, and personal data). Read every few minutes; a function the token may not
call (a reseller's) is asked again at the section's refresh, not at every probe. Config section
``logins``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from whm_exporter.collect.state import LOGIN_KINDS, Item, Kept, Kind, TargetState
from whm_exporter.families.base import Call, Family, Fields, Problems, Served
from whm_exporter.series import Family as MetricFamily
from whm_exporter.snapshot import Snapshot
from whm_exporter.whm import parse
from whm_exporter.whm.errors import WHMError

USER_METRIC = "whm_user_login_failures"
# whm_login_blocks' kind label of each list of blocks.
BLOCKS = {
    Kind.USER_BLOCKS: "user",
    Kind.IP_BLOCKS: "ip",
    Kind.EXCESSIVE_BLOCKS: "excessive_ip",
}


@dataclass(frozen=True, slots=True)
class UserFailures:
    """Failed logins of one user or address to one service."""

    user: str
    service: str
    count: int


# A kept answer's user rows: UserFailures' fields in order.
ROWS: Fields[UserFailures] = Fields(UserFailures)


@dataclass(frozen=True, slots=True)
class Failures:
    """What is kept of get_cphulk_failed_logins: every row counted by service, and the users
    with the most failures (all services together) by service, with the series left out."""

    by_service: Mapping[str, int]
    users: Kept[UserFailures]


@dataclass(frozen=True, slots=True)
class Logins:
    """What a probe serves: each answer read within max_age (None, or a kind absent: unread)."""

    enabled: bool | None
    failures: Failures | None
    # whm_login_blocks' kind label -> blocks.
    blocks: Mapping[str, int]


def top_users(rows: tuple[parse.LoginFailure, ...], max_users: int) -> Failures:
    """The rows counted by service, and by user and service for the ``max_users`` users with
    the most failures (0: every user), ties broken by name so the same stay across scrapes."""
    by_pair = Counter((r.user, r.service) for r in rows)
    by_user = Counter(r.user for r in rows)
    ranked = sorted(by_user, key=lambda u: (-by_user[u], u))
    kept = set(ranked[:max_users] if max_users else ranked)
    records = tuple(
        UserFailures(user, service, n)
        for (user, service), n in sorted(by_pair.items())
        if user in kept
    )
    return Failures(
        dict(sorted(Counter(r.service for r in rows).items())),
        Kept(records, len(by_pair) - len(records)),
    )


class LoginsFamily(Family):
    section = "logins"
    kinds = LOGIN_KINDS
    exposition_rank = 6
    # Five cheap calls, with the settings (same rank, before them in the registry) before
    # thousands of mailboxes.
    first_rank = 0
    failure_waits_refresh = True
    renewed_when_due = True

    def plan(self, item: Item[Any], state: TargetState, wall: float) -> Call:
        return Call(item.kind.value, "", {}, lambda b, now: _keep(state, item, b, now))

    def items(self, state: TargetState) -> Iterator[Item[Any]]:
        return iter(state.logins.values())

    def find(self, state: TargetState, kind: Kind, user: str, subject: str) -> Item[Any] | None:
        return state.logins.get(kind)

    # Kept as: cphulk_status a bool; the failed logins their counts by service, then the series
    # left out and the users' rows; each list of blocks its count.
    def wire_type(self, kind: Kind) -> Any:
        if kind is Kind.CPHULK:
            return bool
        if kind is Kind.LOGIN_FAILURES:
            return tuple[dict[str, int], int, list[ROWS.wire]]  # type: ignore[name-defined]
        return int

    def dump(self, kind: Kind, answer: Any) -> Any:
        if isinstance(answer, Failures):
            users = answer.users
            return answer.by_service, users.dropped, [ROWS.out(r) for r in users.records]
        return answer

    def load(self, kind: Kind, value: Any, user: str, subject: str) -> Any:
        if kind is not Kind.LOGIN_FAILURES:
            return value
        by_service, dropped, rows = value
        return Failures(by_service, Kept(tuple(ROWS.into(r) for r in rows), dropped))

    def serve(self, state: TargetState, served: Served) -> Mapping[str, Any]:
        max_age = state.module.logins.max_age
        found: dict[Kind, Any] = {}
        for kind, item in state.logins.items():
            for answer in served.take([item], kind.value, max_age):
                found[kind] = answer
        failures: Failures | None = found.get(Kind.LOGIN_FAILURES)
        if failures is not None and failures.users.dropped:
            served.dropped[USER_METRIC] = failures.users.dropped
        blocks = {label: found[kind] for kind, label in BLOCKS.items() if kind in found}
        return {"logins": Logins(found.get(Kind.CPHULK), failures, blocks)}

    def render(self, s: Snapshot) -> list[MetricFamily]:
        logins: Logins = s.logins
        failures = logins.failures
        return [
            MetricFamily(
                "whm_cphulk_enabled",
                "1 when cPHulk, cPanel's brute-force protection, is on (cphulk_status).",
                samples=[((), int(logins.enabled))] if logins.enabled is not None else [],
            ),
            MetricFamily(
                "whm_login_failures",
                "Failed logins cPHulk holds (its lookback, 6 hours by default), by the service"
                " logged in to (get_cphulk_failed_logins).",
                ("service",),
                [((k,), n) for k, n in failures.by_service.items()] if failures else [],
            ),
            MetricFamily(
                USER_METRIC,
                "Failed logins cPHulk holds of the users or addresses with the most (logins"
                ".max_users, all services together), by service (get_cphulk_failed_logins).",
                ("user", "service"),
                [((r.user, r.service), r.count) for r in failures.users.records]
                if failures
                else [],
            ),
            MetricFamily(
                "whm_login_blocks",
                "What cPHulk blocks now: users (get_cphulk_user_brutes), addresses"
                " (get_cphulk_brutes) and addresses blocked for a day"
                " (get_cphulk_excessive_brutes).",
                ("kind",),
                [((k,), n) for k, n in logins.blocks.items()],
            ),
        ]


def _keep(state: TargetState, item: Item[Any], body: object, now: float) -> Problems:
    kind = item.kind
    if kind is Kind.CPHULK:
        state.answered(item, parse.cphulk_status(body), now)
        return []
    answer: Failures | int
    if kind is Kind.LOGIN_FAILURES:
        failed = parse.cphulk_failures(body, kind.value)
        answer, bad = top_users(failed.rows, state.module.logins.max_users), failed.bad_records
    elif kind is Kind.USER_BLOCKS:
        failed = parse.cphulk_failures(body, kind.value)
        answer, bad = len(failed.rows), failed.bad_records
    else:
        blocked = parse.cphulk_blocks(body, kind.value)
        answer, bad = len(blocked.rows), blocked.bad_records
    state.answered(item, answer, now)
    # A row refused costs only itself: counted, as emailtrack_user_stats' records are.
    return [WHMError("protocol", f"record refused: {text}") for text in bad]


FAMILY = LoginsFamily()
