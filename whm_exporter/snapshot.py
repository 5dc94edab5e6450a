"""What one probe found: plain records, built by the probe and read by the metrics module."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


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
class CallRecord:
    """One WHM call as the debug page shows it. ``outcome`` is success, cached or a reason."""

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
    deadline_exceeded: bool
    calls: Mapping[str, int]
    errors: Mapping[tuple[str, str], int]
    discovered_users: int
    discovered_accounts: int
    mailboxes: Sequence[MailboxSample]
    senders: Sequence[SenderSample]
    user_totals: Sequence[UserSample]
    dropped: Mapping[str, int]
    cache_age: Mapping[str, float]
    log: Sequence[CallRecord]
