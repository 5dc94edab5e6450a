"""Exim's queue (fetch_mail_queue): its size, frozen messages, bounces, bytes, how old the oldest
message is and how many are older than each age bucket, and the senders and recipient domains
with the most queued messages. A spam run backs up here (deferred by the big providers) before
any hourly check catches it, and a backlog to one provider is how a block list shows.

WHM runs ``exim -bpra`` over the whole queue at every call, and the answer grows with it (100,000
messages are about 17 MB): it is asked at the section's refresh, charged to the load budget at
its real duration like every call, and read as it arrives (whm/stream.py), each message reduced
to counts (whm/queue.py), so memory does not grow with the queue and the event loop is never held
long. An answer beyond the section's own limit is refused with its size: an error, not a crash.
Config section ``mail_queue``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from whm_exporter.collect.state import Item, Kept, Kind, TargetState
from whm_exporter.families.base import Call, Family, Fields, Problems, Served
from whm_exporter.series import Family as MetricFamily
from whm_exporter.snapshot import Snapshot
from whm_exporter.whm.errors import WHMError
from whm_exporter.whm.queue import QueueCounts, QueueTally
from whm_exporter.whm.stream import Records

FUNCTION = Kind.MAIL_QUEUE.value
SENDER_METRIC = "whm_mail_queue_sender_messages"
DOMAIN_METRIC = "whm_mail_queue_recipient_domain_messages"


@dataclass(frozen=True, slots=True)
class QueuedSender:
    """A sender's queued messages, with its cPanel user ("" when it is not on the server)."""

    sender: str
    user: str
    messages: int


@dataclass(frozen=True, slots=True)
class QueuedDomain:
    domain: str
    messages: int


SENDER_ROWS: Fields[QueuedSender] = Fields(QueuedSender)
DOMAIN_ROWS: Fields[QueuedDomain] = Fields(QueuedDomain)


@dataclass(frozen=True, slots=True)
class Queue:
    """What is kept of one reading of the queue."""

    messages: int
    frozen: int
    bounces: int
    size_bytes: int
    oldest: int | None
    # age_buckets' label -> messages queued longer, at the time of the call.
    aged: Mapping[str, int]
    senders: Kept[QueuedSender]
    domains: Kept[QueuedDomain]


def top(counts: Counter[str], limit: int) -> tuple[list[tuple[str, int]], int]:
    """The ``limit`` biggest counts (0: all), ties by name so the same stay across readings,
    and how many were left out."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = ranked[:limit] if limit else ranked
    return kept, len(ranked) - len(kept)


def owners(state: TargetState) -> tuple[dict[str, str], dict[str, str]]:
    """The cPanel user of each address the inventory knows, and of each mail domain."""
    by_address = {
        account.lower(): user
        for user, accounts in state.accounts.items()
        for account in accounts
        if "@" in account
    }
    return by_address, state.domain_owners()


def reduce(counts: QueueCounts, state: TargetState, labels: tuple[str, ...]) -> Queue:
    """The figures as kept: the top senders (each with its user: the one Exim named, else the
    inventory's owner of the address or of its domain) and top recipient domains."""
    cfg = state.module.mail_queue
    senders, senders_left = top(counts.senders, cfg.max_senders)
    domains, domains_left = top(counts.domains, cfg.max_domains)
    by_address, by_domain = owners(state)

    def user_of(sender: str) -> str:
        named = counts.users.get(sender)
        if named:
            return named
        return by_address.get(sender) or by_domain.get(sender.rpartition("@")[2], "")

    return Queue(
        counts.messages,
        counts.frozen,
        counts.bounces,
        counts.size_bytes,
        counts.oldest,
        dict(zip(labels, counts.aged, strict=True)),
        Kept(tuple(QueuedSender(s, user_of(s), n) for s, n in senders), senders_left),
        Kept(tuple(QueuedDomain(d, n) for d, n in domains), domains_left),
    )


class MailQueueFamily(Family):
    section = "mail_queue"
    kinds = (Kind.MAIL_QUEUE,)
    exposition_rank = 7
    # One call, before thousands of mailboxes (after the settings and cPHulk's few).
    first_rank = 0
    # A token may not read the queue (a reseller's): asked again at the refresh, not at every
    # probe.
    failure_waits_refresh = True
    renewed_when_due = True
    # The first reading is waited for; a refresh, seconds long on a big queue, is not.
    refresh_waited = False

    def plan(self, item: Item[Any], state: TargetState, wall: float) -> Call:
        cfg = state.module.mail_queue
        buckets = cfg.age_buckets
        tally = QueueTally([wall - b.seconds for b in buckets])
        labels = tuple(b.label for b in buckets)

        def keep(read: int, now: float) -> Problems:
            counts = tally.counts()
            state.answered(item, reduce(counts, state, labels), now)
            return _refused(counts)

        return Call(
            FUNCTION,
            "",
            {},
            keep,
            stream=lambda: Records(FUNCTION, "records", tally.add),
            timeout=cfg.request_timeout,
            max_bytes=cfg.max_response_bytes,
        )

    def items(self, state: TargetState) -> Iterator[Item[Any]]:
        if state.queue is not None:
            yield state.queue

    def find(self, state: TargetState, kind: Kind, user: str, subject: str) -> Item[Any] | None:
        return state.queue

    # Kept as: messages, frozen, bounces, bytes, the oldest arrival (None: empty), messages by
    # age bucket, then the senders left out and the top senders' rows, the same for domains.
    def wire_type(self, kind: Kind) -> Any:
        return tuple[
            int,
            int,
            int,
            int,
            int | None,
            dict[str, int],
            int,
            list[SENDER_ROWS.wire],  # type: ignore[name-defined]
            int,
            list[DOMAIN_ROWS.wire],  # type: ignore[name-defined]
        ]

    def dump(self, kind: Kind, answer: Queue) -> Any:
        return (
            answer.messages,
            answer.frozen,
            answer.bounces,
            answer.size_bytes,
            answer.oldest,
            dict(answer.aged),
            answer.senders.dropped,
            [SENDER_ROWS.out(r) for r in answer.senders.records],
            answer.domains.dropped,
            [DOMAIN_ROWS.out(r) for r in answer.domains.records],
        )

    def load(self, kind: Kind, value: Any, user: str, subject: str) -> Any:
        messages, frozen, bounces, size, oldest, aged, s_left, senders, d_left, domains = value
        return Queue(
            messages,
            frozen,
            bounces,
            size,
            oldest,
            aged,
            Kept(tuple(SENDER_ROWS.into(r) for r in senders), s_left),
            Kept(tuple(DOMAIN_ROWS.into(r) for r in domains), d_left),
        )

    def serve(self, state: TargetState, served: Served) -> Mapping[str, Any]:
        items = [state.queue] if state.queue is not None else []
        found = served.take(items, FUNCTION, state.module.mail_queue.max_age)
        queue: Queue | None = found[0] if found else None
        if queue is not None:
            for metric, kept in ((SENDER_METRIC, queue.senders), (DOMAIN_METRIC, queue.domains)):
                if kept.dropped:
                    served.dropped[metric] = kept.dropped
        return {"mail_queue": queue}

    def render(self, s: Snapshot) -> list[MetricFamily]:
        q: Queue | None = s.mail_queue

        def whole(name: str, help_text: str, field: str) -> MetricFamily:
            value = getattr(q, field) if q is not None else None
            samples = [((), value)] if value is not None else []
            return MetricFamily(name, f"{help_text} (fetch_mail_queue).", samples=samples)

        return [
            whole("whm_mail_queue_messages", "Messages in Exim's queue", "messages"),
            whole(
                "whm_mail_queue_frozen_messages",
                "Messages in Exim's queue it has frozen (no longer tries to deliver)",
                "frozen",
            ),
            whole(
                "whm_mail_queue_bounce_messages",
                "Bounces in Exim's queue (messages with an empty sender)",
                "bounces",
            ),
            whole(
                "whm_mail_queue_size_bytes",
                "Size of the messages in Exim's queue, as exactly as exim shows it, in bytes",
                "size_bytes",
            ),
            whole(
                "whm_mail_queue_oldest_message_timestamp_seconds",
                "Arrival time of the oldest message in Exim's queue; absent when it is empty",
                "oldest",
            ),
            MetricFamily(
                "whm_mail_queue_aged_messages",
                "Messages in Exim's queue that arrived longer ago than older_than"
                " (mail_queue.age_buckets), at the time it was read (fetch_mail_queue).",
                ("older_than",),
                [((label,), n) for label, n in q.aged.items()] if q else [],
            ),
            MetricFamily(
                SENDER_METRIC,
                "Messages in Exim's queue of the senders with the most (mail_queue.max_senders;"
                " bounces aside), with the sender's cPanel user (empty when the address is not"
                " on the server) (fetch_mail_queue).",
                ("sender", "user"),
                [((r.sender, r.user), r.messages) for r in q.senders.records] if q else [],
            ),
            MetricFamily(
                DOMAIN_METRIC,
                "Messages in Exim's queue to the recipient domains with the most"
                " (mail_queue.max_domains); a message to several addresses of one domain counts"
                " once, and WHM lists addresses already delivered too. A backlog to one provider"
                " is how a block list shows (fetch_mail_queue).",
                ("domain",),
                [((r.domain,), r.messages) for r in q.domains.records] if q else [],
            ),
        ]


def _refused(counts: QueueCounts) -> Problems:
    """A message refused costs only itself: each counted, as the other lists' records are (the
    first MAX_REFUSED_TEXTS with their text, the rest in one more line)."""
    problems = [WHMError("protocol", f"record refused: {t}") for t in counts.refused_texts]
    more = counts.refused - len(counts.refused_texts)
    if more:
        problems.append(WHMError("protocol", f"{more} more queued messages refused"))
    return problems


FAMILY = MailQueueFamily()
