"""Exim's queue as fetch_mail_queue lists it, reduced to figures one message at a time, as the
answer arrives (whm/stream.py): nothing of a message is kept but what it adds to the counts.

A message is ``{msgid, sender, recipients[], size, time, frozen, user}`` (the function's
reference page). What real servers send (cPanel's Whostmgr/Exim.pm, which parses ``exim -bpra``):
``time`` is the arrival time its message id encodes, ``size`` is as precise as exim's display
(``14K`` is 14336), a bounce has sender ``""``, ``recipients`` also lists addresses already
delivered, and ``user`` is almost always ``null``. A message that cannot be read (no ``time``,
say) costs only itself: it is counted as refused, not in the figures.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from whm_exporter.whm.errors import WHMError
from whm_exporter.whm.parse import counter

# The texts of refused messages kept for the log; past this many only their number grows.
MAX_REFUSED_TEXTS = 100
# What Exim writes for the empty sender of a bounce, besides "".
_BOUNCE_SENDERS = frozenset({"", "<>"})


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """Exim's queue in figures: every message read, and by sender and recipient domain."""

    messages: int
    frozen: int
    bounces: int
    size_bytes: int
    # Arrival time of the oldest message (Unix seconds); None when the queue is empty.
    oldest: int | None
    # Messages that arrived before each cutoff, in the cutoffs' order.
    aged: tuple[int, ...]
    # Messages by sender (bounces aside), and the cPanel user Exim names for a sender.
    senders: Counter[str]
    users: dict[str, str]
    # Messages by recipient domain: a message to three addresses at one domain counts once.
    domains: Counter[str]
    refused: int
    refused_texts: tuple[str, ...]


class QueueTally:
    """The figures of the messages given to :meth:`add` (the stream's consumer). ``cutoffs``:
    the arrival times the age buckets count messages before."""

    def __init__(self, cutoffs: Sequence[float]) -> None:
        self._cutoffs = tuple(cutoffs)
        self._aged = [0] * len(self._cutoffs)
        self._messages = self._frozen = self._bounces = self._size = 0
        self._oldest: int | None = None
        self._senders: Counter[str] = Counter()
        self._users: dict[str, str] = {}
        self._domains: Counter[str] = Counter()
        self._seen = 0
        self._refused: list[str] = []
        self._refused_count = 0

    def add(self, message: object) -> None:
        """One message of ``data.records[]``; never raises."""
        self._seen += 1
        try:
            arrival, sender, domains, size, frozen, user = _read(message)
        except WHMError as err:
            self._refused_count += 1
            if len(self._refused) < MAX_REFUSED_TEXTS:
                self._refused.append(f"queued message {self._seen - 1}: {err.detail}")
            return
        self._messages += 1
        self._size += size
        self._frozen += frozen
        if self._oldest is None or arrival < self._oldest:
            self._oldest = arrival
        for n, cutoff in enumerate(self._cutoffs):
            if arrival < cutoff:
                self._aged[n] += 1
        if sender in _BOUNCE_SENDERS:
            self._bounces += 1
        else:
            self._senders[sender] += 1
            if user and sender not in self._users:
                self._users[sender] = user
        self._domains.update(domains)

    def counts(self) -> QueueCounts:
        return QueueCounts(
            self._messages,
            self._frozen,
            self._bounces,
            self._size,
            self._oldest,
            tuple(self._aged),
            self._senders,
            self._users,
            self._domains,
            self._refused_count,
            tuple(self._refused),
        )


def _read(message: object) -> tuple[int, str, set[str], int, bool, str]:
    """A message's arrival time, sender (lower-cased), recipient domains, size, whether frozen
    and the user Exim names ("" for none), or WHMError for what cannot be read."""
    if not isinstance(message, dict):
        raise WHMError("protocol", f"is {type(message).__name__}, expected an object")
    if "time" not in message:
        raise WHMError("protocol", "has no 'time'")
    arrival = counter(message["time"], "time")
    sender = message.get("sender")
    if not isinstance(sender, str):
        raise WHMError("protocol", "has no sender string")
    recipients = message.get("recipients")
    if not isinstance(recipients, list):
        raise WHMError("protocol", "has no recipients list")
    domains = set()
    for address in recipients:
        # A local delivery names a user without a domain: no recipient domain.
        if isinstance(address, str) and (at := address.rfind("@")) >= 0 and address[at + 1 :]:
            domains.add(address[at + 1 :].lower())
    size = counter(message.get("size", 0), "size")
    frozen = message.get("frozen", 0)
    if frozen not in (0, 1, "0", "1"):  # True and False are 1 and 0
        raise WHMError("protocol", f"frozen is not 0 or 1: {str(frozen)[:20]!r}")
    user = message.get("user")
    return (
        arrival,
        sender.lower(),
        domains,
        size,
        frozen in (1, "1"),
        user if isinstance(user, str) else "",
    )
