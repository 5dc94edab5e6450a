"""What one probe serves: plain records, built from the target's state by the probe and read by
the metrics module."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class MailboxSample:
    user: str
    account: str
    mailbox: str
    messages: int
    vsize: int


@dataclass(frozen=True, slots=True)
class SenderSample:
    user: str
    sender: str
    window: str
    count: int


@dataclass(frozen=True, slots=True)
class UserSample:
    user: str
    window: str
    count: int


@dataclass(frozen=True, slots=True)
class LimitSample:
    user: str
    limit: str
    reached: bool
    # cPanel's marker numbers (count this clock hour, cap or minimum), when its text gave them.
    marker: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class UserFlags:
    """What cPanel already did to a user's outgoing mail (listaccts)."""

    user: str
    held: bool
    suspended: bool


@dataclass(frozen=True, slots=True)
class DiskSample:
    """An address's disk use and quota (None: unlimited), from list_pops_with_disk."""

    user: str
    account: str
    used: int
    quota: int | None


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One WHM call as the debug page shows it. ``outcome`` is success, a reason, or
    abandoned."""

    function: str
    subject: str
    seconds: float
    outcome: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Snapshot:
    up: bool
    duration: float
    timeout: float
    # The probe answered with calls in flight or items still to ask (normal on a big server).
    deadline_exceeded: bool
    # Since the previous scrape answered.
    calls: Mapping[str, int]
    errors: Mapping[tuple[str, str], int]
    abandoned: Mapping[str, int]
    discovered_users: int
    discovered_accounts: int
    # (function, fresh|kept|missing) -> items.
    items: Mapping[tuple[str, str], int]
    # function -> age of the oldest answer served.
    data_age: Mapping[str, float]
    dropped: Mapping[str, int]
    log: Sequence[CallRecord]
    # Failed calls by (function, reason) since the target's state began (every reason of a
    # function called, 0 included); unlike ``errors``, whoever scraped last.
    errors_total: Mapping[tuple[str, str], int] = field(default_factory=dict)
    # What each signal family serves, under the names its serve() gives them (mailboxes,
    # senders, discovery_complete, ...): read as attributes, ``snapshot.senders``, by the
    # family's own render(). A new family adds its part here, not a field.
    parts: Mapping[str, Any] = field(default_factory=dict)
    # Answers that outlived max_age before the collection came back to them (not refusals).
    expired: int = 0

    def __getattr__(self, name: str) -> Any:
        # Called only for a name no field has: a family's part.
        try:
            return object.__getattribute__(self, "parts")[name]
        except KeyError:
            raise AttributeError(f"no part {name!r} in this snapshot") from None
