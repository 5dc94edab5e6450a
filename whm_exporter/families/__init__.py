"""The signal families, one module each (see base.py for what a family declares). Adding one is
a module and a line below.

The order is the kept-state document's and the order a restore replays answers asked at the
same instant in: the inventory, then the server-wide answers, then what they vouch for.
"""

from __future__ import annotations

from whm_exporter.collect.state import Kind
from whm_exporter.config import ModuleConfig, Window
from whm_exporter.families import (
    discovery,
    dns_auth,
    logins,
    mail_flow,
    mail_queue,
    mailboxes,
    senders,
    server_settings,
    totals,
)
from whm_exporter.families.base import Family

FAMILIES: tuple[Family, ...] = (
    discovery.FAMILY,
    totals.FAMILY,
    mail_flow.FAMILY,
    senders.FAMILY,
    mailboxes.FAMILY,
    server_settings.FAMILY,
    logins.FAMILY,
    mail_queue.FAMILY,
    dns_auth.FAMILY,
)
BY_KIND: dict[Kind, Family] = {kind: f for f in FAMILIES for kind in f.kinds}
# The families in the order their metrics stand in a probe's output.
EXPOSED = tuple(sorted(FAMILIES, key=lambda f: f.exposition_rank))
assert list(BY_KIND) == list(Kind), "the families own every kind once, in Kind's order"
# The kinds whose items never answered wait in the schedule's tier (c), in its order.
_TIERED = [f for f in FAMILIES if f.first_rank is not None]
FIRST_TIME = tuple(k for f in sorted(_TIERED, key=lambda f: f.first_rank or 0) for k in f.kinds)


def refresh_of(module: ModuleConfig) -> dict[Kind, float]:
    """How long an answer of each kind is not asked again."""
    return {kind: BY_KIND[kind].refresh(module, kind) for kind in Kind}


def max_age_of(module: ModuleConfig) -> dict[Kind, float]:
    """How long an answer of each kind is served."""
    return {kind: BY_KIND[kind].max_age(module, kind) for kind in Kind}


def windows_of(module: ModuleConfig) -> tuple[Window, ...]:
    """Every time window a windowed call may ask about."""
    return tuple(w for f in FAMILIES for w in f.windows(module))
