"""Mail DNS: whether cPanel finds each mail domain's SPF, DKIM and PTR records valid
(validate_current_spfs, validate_current_dkims, validate_current_ptrs: the checks of WHM's Email
Deliverability page), for every domain the inventory knows: each user's main domain (listaccts)
and the domains of its addresses. Receivers reject or junk mail that fails them.

One item per record kind, its domains asked in batches of ``domains_per_call`` (the parameter
``domain`` repeated), each further call waiting for the load budget; no probe waits for them,
and they are asked hours apart. cPanel fails a whole call for one domain it does not let the
token check (another owner's, or one gone): the batch is split in halves until that domain is
found alone; it is left out (the debug page names it with WHM's reason) and the rest goes on.
At the next refresh such a domain is asked alone, at the end: one failed call, not a search.
A function the token may not call at all (a reseller's) fails its item, asked again at the
refresh. Config section ``dns_auth``."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from whm_exporter.collect.state import DNS_KINDS, Item, Kind, TargetState
from whm_exporter.families.base import Call, Family, Problems, Served
from whm_exporter.series import Family as MetricFamily
from whm_exporter.snapshot import Snapshot
from whm_exporter.whm import parse
from whm_exporter.whm.errors import WHMError

METRIC = "whm_domain_mail_auth_valid"
# The record label of each kind.
RECORDS = {Kind.SPF: "spf", Kind.DKIM: "dkim", Kind.PTR: "ptr"}
VALID = "VALID"
# WHM's reasons carry a per-call id ("API failure: (XID abc123) ..."): two refusals are alike
# without it.
_XID = re.compile(r"\(XID [^)]*\)\s*")


@dataclass(frozen=True, slots=True)
class Checked:
    """What is kept of one record kind's checks: each domain's state as cPanel gave it (VALID,
    or why not), and the domains left out (refused alone) with WHM's reason."""

    states: Mapping[str, str]
    left_out: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class DomainState:
    user: str
    domain: str
    record: str
    state: str


@dataclass(frozen=True, slots=True)
class MailAuth:
    """What a probe serves: the checks read within max_age of domains the inventory still
    knows, and the domains left out with WHM's reason (their state is WHM's reason)."""

    checks: tuple[DomainState, ...]
    left_out: tuple[DomainState, ...]


class _Pass:
    """One pass over an item's domains: batches, then the domains left out last time, each
    alone. A batch cPanel refuses (``api``) is split in halves; a domain refused alone is left
    out. Before any call of the pass succeeded, the first refused batch's two halves are both
    asked before either is split: two separate parts refused alike mean the function is refused
    to the token (no domain is to blame), and the item fails after three calls, not a search of
    every batch."""

    def __init__(self, item: Item[Any], state: TargetState, domains: Mapping[str, str]) -> None:
        self.item = item
        self.state = state
        before: Checked | None = item.answer
        alone = sorted(d for d in (before.left_out if before else ()) if d in domains)
        size = state.module.dns_auth.domains_per_call
        batched = sorted(domains.keys() - set(alone))
        self.todo: deque[tuple[str, ...]] = deque(
            tuple(batched[i : i + size]) for i in range(0, len(batched), size)
        )
        self.todo.extend((d,) for d in alone)
        self.asked = set(domains)
        self.states: dict[str, str] = {}
        self.left_out: dict[str, str] = {}
        # Domains of batches that failed for another reason than a refusal (a timeout, say)
        # once the pass had answers: they keep what the previous pass found.
        self.skipped: set[str] = set()
        self.before = before
        # Whether a call of this pass succeeded, and when the last did.
        self.ok = False
        self.at = item.attempted_at
        # Before anything answered: the parts refused and WHM's reason (without its call id),
        # and the halves of the first batch refused.
        self.refusals: list[tuple[frozenset[str], str]] = []
        self.halves: tuple[tuple[str, ...], tuple[str, ...]] | None = None

    def next(self) -> Call | None:
        """The next call, or None: the item answered (or failed, when nothing answered)."""
        if not self.todo:
            # Domains the inventory gained while the pass ran (it may start while addresses
            # are still being listed).
            gained = sorted(self.state.domain_owners().keys() - self.asked)
            self.asked.update(gained)
            size = self.state.module.dns_auth.domains_per_call
            self.todo.extend(tuple(gained[i : i + size]) for i in range(0, len(gained), size))
        if self.todo:
            return self._call(self.todo.popleft())
        if self.ok:
            kept = self.before.states if self.before is not None else {}
            states = {d: kept[d] for d in sorted(self.skipped) if d in kept} | self.states
            self.state.answered(self.item, Checked(states, self.left_out), self.at)
        return None

    def _call(self, batch: tuple[str, ...]) -> Call:
        subject = batch[0] if len(batch) == 1 else f"{batch[0]} and {len(batch) - 1} more"
        return Call(
            self.item.kind.value,
            subject,
            {"domain": batch},
            lambda body, now: self._keep(batch, body, now),
            timeout=self.state.module.dns_auth.request_timeout,
            then=self.next,
            on_error=lambda err: self._refused(batch, err),
        )

    def _keep(self, batch: tuple[str, ...], body: object, now: float) -> Problems:
        checks = parse.domain_checks(body, self.item.kind.value)
        self.ok = True
        self.at = now
        asked = set(batch)
        bad = list(checks.bad_records)
        for domain, state in checks.states:
            if domain not in asked:
                bad.append(f"{domain}: not asked")
            elif self.states.get(domain, VALID) == VALID:
                # A domain checked twice (two addresses, say) is valid only if both are.
                self.states[domain] = state
        bad += [f"{d}: not in the answer" for d in batch if d not in self.states]
        # An item refused costs only its domain: counted, as emailtrack_user_stats' records are.
        return [WHMError("protocol", f"record refused: {text}") for text in bad]

    def _refused(self, batch: tuple[str, ...], err: WHMError) -> Call | None:
        if err.unknown_function or err.reason in ("auth", "role_disabled"):
            # Not about a domain (credentials, a server without the function or its role): the
            # item failed.
            return None
        if err.reason != "api":
            if not self.ok:
                # Nothing answered yet (WHM down, say): the item failed, asked at its refresh.
                return None
            # A batch that timed out (one domain's slow nameservers) or came back broken costs
            # only its domains, which keep the previous pass's states.
            self.skipped.update(batch)
            return self.next()
        if not self.ok:
            reason = _XID.sub("", err.detail)
            part = frozenset(batch)
            if any(reason == r and part.isdisjoint(p) for p, r in self.refusals):
                # Two separate parts refused alike before anything answered: the function
                # itself (a reseller's token), no domain.
                return None
            self.refusals.append((part, reason))
        if len(batch) == 1:
            self.left_out[batch[0]] = err.detail
            return self.next()
        half = len(batch) // 2
        parts = (batch[:half], batch[half:])
        if not self.ok and self.halves is not None and batch == self.halves[0]:
            # The left half's parts wait behind the right half, asked first.
            self.todo.insert(1, parts[1])
            self.todo.insert(1, parts[0])
        else:
            self.todo.extendleft(reversed(parts))
            if not self.ok and self.halves is None:
                self.halves = parts
        return self.next()


class DnsAuth(Family):
    section = "dns_auth"
    kinds = DNS_KINDS
    exposition_rank = 7
    # After every other family: many calls that make cPanel ask DNS, hours apart.
    first_rank = 3
    failure_waits_refresh = True
    renewed_when_due = True
    probe_waits = False

    def plan(self, item: Item[Any], state: TargetState, wall: float) -> Call | None:
        call = _Pass(item, state, state.domain_owners()).next()
        if call is None and item.answer is None:
            # No domain to check (the inventory lost them all since the item was queued); a
            # previous answer stays, served until its max_age.
            state.answered(item, Checked({}, {}), item.attempted_at)
        return call

    def items(self, state: TargetState) -> Iterator[Item[Any]]:
        return iter(state.dns_auth.values())

    def find(self, state: TargetState, kind: Kind, user: str, subject: str) -> Item[Any] | None:
        return state.dns_auth.get(kind)

    # Kept as: (domain, state) rows, then (domain, WHM's reason) of the domains left out.
    def wire_type(self, kind: Kind) -> Any:
        return tuple[list[tuple[str, str]], list[tuple[str, str]]]

    def dump(self, kind: Kind, answer: Checked) -> Any:
        return sorted(answer.states.items()), sorted(answer.left_out.items())

    def load(self, kind: Kind, value: Any, user: str, subject: str) -> Any:
        states, left_out = value
        return Checked(dict(states), dict(left_out))

    def serve(self, state: TargetState, served: Served) -> Mapping[str, Any]:
        max_age = state.module.dns_auth.max_age
        answers = {
            kind: answer
            for kind, item in state.dns_auth.items()
            for answer in served.take([item], kind.value, max_age)
        }
        owners = state.domain_owners() if answers else {}
        checks: list[DomainState] = []
        left_out: list[DomainState] = []
        for kind, answer in answers.items():
            for into, found in ((checks, answer.states), (left_out, answer.left_out)):
                into += [
                    DomainState(owners[d], d, RECORDS[kind], text)
                    for d, text in found.items()
                    if d in owners
                ]
        order = list(RECORDS.values())

        def key(s: DomainState) -> tuple[str, str, int]:
            return s.user, s.domain, order.index(s.record)

        return {
            "dns_auth": MailAuth(tuple(sorted(checks, key=key)), tuple(sorted(left_out, key=key)))
        }

    def render(self, s: Snapshot) -> list[MetricFamily]:
        found: MailAuth = s.dns_auth
        return [
            MetricFamily(
                METRIC,
                "1 when cPanel finds the domain's SPF, DKIM or PTR record (record) valid, 0 when"
                " not: its state is on /probe?debug=true (validate_current_spfs,"
                " validate_current_dkims, validate_current_ptrs).",
                ("user", "domain", "record"),
                [((c.user, c.domain, c.record), int(c.state == VALID)) for c in found.checks],
            )
        ]

    def debug(self, s: Snapshot) -> list[str]:
        found: MailAuth = s.dns_auth
        lines = [
            f"  {c.domain} {c.record}: {c.state} (user {c.user})"
            for c in found.checks
            if c.state != VALID
        ]
        lines += [
            f"  {c.domain} {c.record}: left out, {c.state} (user {c.user})" for c in found.left_out
        ]
        if not lines:
            return []
        return ["Mail DNS records cPanel does not find valid, and domains left out:", *lines]


FAMILY = DnsAuth()
