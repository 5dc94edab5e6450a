"""A target's state as a document and back: what ``--storage.path`` keeps across restarts.

Three steps, each where it costs least:

- :func:`capture` runs on the event loop: one pass over the items taking references (answers are
  immutable objects, replaced and never changed in place, so a writer thread may read them).
- :func:`dump` runs in the writer thread: plain lists, wall-clock times, JSON (orjson).
- :func:`parse` then :func:`restore` run once at start. The whole document is decoded and
  checked against its schema (pydantic-core: parsing and checking in one pass, as fast as
  orjson alone) before any state exists; the answers are then replayed, oldest attempt first,
  through TargetState's own ``start`` / ``answered`` / ``finish`` into a new state, so lanes,
  hot users, the breakdowns the totals vouch for and the inventory come out as the live answers
  built them. A document that does not fit raises :class:`Unusable`, and the new state is
  thrown away whole: nothing is ever half loaded. One thing is not exact: only the last
  per-user totals are kept, so a breakdown read before them comes back without the total it
  was read with, and the next totals have it asked again rather than vouch for it.

Times: the state counts in the monotonic clock, which restarts with the machine. The document
holds wall-clock times (``wall = mono + time.time() - time.monotonic()`` at the capture, the
reverse at start), so the downtime counts in every answer's age.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from whm_exporter.collect.state import Addresses, Item, Kept, Kind, TargetState
from whm_exporter.config import ModuleConfig, state_identity
from whm_exporter.snapshot import MailboxSample, SenderSample
from whm_exporter.whm.parse import Account, Mailbox, MailFlow

X = TypeVar("X")
# One item: user, subject, when last asked, when last answered (None: never), whether the last
# call succeeded, and the answer (None: none yet). Times are wall-clock seconds.
Rows = list[tuple[str, str, float, float | None, bool, X | None]]


class Document(BaseModel):
    """The schema of a kept state: one list of rows per kind, named after it."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    target: str
    identity: str
    written: float
    mailbox_function: str | None
    # The users kept (user, suspended, outgoing mail held, outgoing mail suspended), and the
    # other users listaccts named (suspended or filtered out).
    listaccts: Rows[tuple[list[tuple[str, bool, bool, bool]], list[str]]]
    # addresses; with list_pops_with_disk: address, main mailbox, disk used, quota (None: none).
    list_pops_for: Rows[tuple[list[str], list[tuple[str, bool, int, int | None]]]]
    get_unique_sender_recipient_count_per_user: Rows[dict[str, int]]
    # user and the emailtrack_user_stats counters and limit flags, in MailFlow's order.
    emailtrack_user_stats: Rows[list[tuple[str, int, int, int, int, int, int, bool, bool]]]
    # series dropped, then sender and count.
    get_unique_recipient_count_per_sender_for_user: Rows[tuple[int, list[tuple[str, int]]]]
    # series dropped, then folder, messages and vsize.
    mailbox: Rows[tuple[int, list[tuple[str, int, int]]]]


# The digest a kept state is filed under; the config owns it, the exporter asks for it here.
identity = state_identity


class Unusable(ValueError):
    """A kept state that cannot be restored; the text says why."""


# kind, user, subject, asked (monotonic), answered (monotonic, None: no answer), last call ok,
# the answer object.
Row = tuple[Kind, str, str, float, float | None, bool, Any]


@dataclass(frozen=True, slots=True)
class Capture:
    """What a target's state held at one moment, by reference."""

    identity: str
    mailbox_function: str | None
    # wall - monotonic when captured.
    offset: float
    rows: list[Row]

    def fingerprint(self) -> int:
        """Equal for two captures that would write the same document: an answer never
        changes without its answer time."""
        heads = tuple(row[:6] for row in self.rows)
        return hash((self.identity, self.mailbox_function, heads))


def _items(state: TargetState) -> Iterator[Item[Any]]:
    if state.listaccts is not None:
        yield state.listaccts
    yield from state.pops.values()
    yield from state.server_wide
    yield from state.senders.values()
    yield from state.mailboxes.values()


def capture(state: TargetState, identity: str, offset: float) -> Capture:
    """The state now (on the event loop: between two of its steps it is consistent). A call in
    flight is taken as it was before the call, as if abandoned; items never asked are left out."""
    rows: list[Row] = []
    for item in _items(state):
        asked = item.asked_before if item.in_flight else item.attempted_at
        answer = item.answer
        if answer is not None and item.kind is Kind.LISTACCTS:
            # Who else it named tells a user new to the server from one it filtered out.
            answer = (answer, state.listed)
        if answer is None:
            if asked == -math.inf:
                continue
            rows.append((item.kind, item.user, item.subject, asked, None, item.last_ok, None))
        else:
            answered = item.answered_at
            asked = max(asked, answered) if asked == -math.inf else asked
            rows.append((item.kind, item.user, item.subject, asked, answered, item.last_ok, answer))
    return Capture(identity, state.mailbox_function, offset, rows)


# --- answers to plain lists and back -----------------------------------------------------------


def _accounts_out(
    answer: tuple[dict[str, Account], set[str]],
) -> tuple[list[tuple[str, bool, bool, bool]], list[str]]:
    kept, listed = answer
    others = sorted(listed - kept.keys())
    return [
        (a.user, a.suspended, a.outgoing_held, a.outgoing_suspended) for a in kept.values()
    ], others


def _accounts_in(
    value: tuple[list[tuple[str, bool, bool, bool]], list[str]], user: str, subject: str
) -> Any:
    kept, others = value
    # The users the filters or skip_suspended left out: as suspended users, which the same
    # filters leave out again (a user they would keep cannot have been left out).
    return {**{r[0]: Account(*r) for r in kept}, **{u: Account(u, True) for u in others}}


def _pops_out(answer: Addresses) -> tuple[tuple[str, ...], list[tuple[str, bool, int, int | None]]]:
    return answer.addresses, [(m.address, m.main, m.used, m.quota) for m in answer.disk]


def _pops_in(
    value: tuple[list[str], list[tuple[str, bool, int, int | None]]], user: str, subject: str
) -> Any:
    addresses, disk = value
    return Addresses(tuple(addresses), tuple(Mailbox(*m) for m in disk))


def _totals(answer: dict[str, int], *_: str) -> dict[str, int]:
    return answer


def _flow_out(answer: dict[str, MailFlow]) -> list[tuple[Any, ...]]:
    return [
        (
            f.user,
            f.sent,
            f.delivered,
            f.deferrals,
            f.failures,
            f.defer_failures,
            f.sent_bytes,
            f.reached_max_emails,
            f.reached_max_defer_fail,
        )
        for f in answer.values()
    ]


def _flow_in(rows: list[tuple[Any, ...]], user: str, subject: str) -> Any:
    return {r[0]: MailFlow(*r) for r in rows}


def _senders_out(answer: Kept[SenderSample]) -> tuple[int, list[tuple[str, int]]]:
    return answer.dropped, [(r.sender, r.count) for r in answer.records]


def _senders_in(value: tuple[int, list[tuple[str, int]]], user: str, window: str) -> Any:
    dropped, records = value
    return Kept(tuple(SenderSample(user, s, window, n) for s, n in records), dropped)


def _mailbox_out(answer: Kept[MailboxSample]) -> tuple[int, list[tuple[str, int, int]]]:
    return answer.dropped, [(r.mailbox, r.messages, r.vsize) for r in answer.records]


def _mailbox_in(value: tuple[int, list[tuple[str, int, int]]], user: str, account: str) -> Any:
    dropped, folders = value
    # Folder names repeat across every account: one string each, as the live answers keep them.
    records = (MailboxSample(user, account, sys.intern(f), m, v) for f, m, v in folders)
    return Kept(tuple(records), dropped)


_OUT: dict[Kind, Callable[[Any], Any]] = {
    Kind.LISTACCTS: _accounts_out,
    Kind.POPS: _pops_out,
    Kind.TOTALS: _totals,
    Kind.MAIL_FLOW: _flow_out,
    Kind.SENDERS: _senders_out,
    Kind.MAILBOX: _mailbox_out,
}
_IN: dict[Kind, Callable[[Any, str, str], Any]] = {
    Kind.LISTACCTS: _accounts_in,
    Kind.POPS: _pops_in,
    Kind.TOTALS: _totals,
    Kind.MAIL_FLOW: _flow_in,
    Kind.SENDERS: _senders_in,
    Kind.MAILBOX: _mailbox_in,
}


# Rows encoded at a time: orjson holds the GIL while it encodes, and the event loop must get it
# back within milliseconds (one call for 20,000 addresses held it for 70 ms).
CHUNK = 1000


def dump(taken: Capture, target: str, written: float) -> bytes:
    """The document of a capture, as JSON (in the writer thread), encoded a chunk at a time."""
    offset = taken.offset
    by_kind: dict[Kind, list[Row]] = {kind: [] for kind in Kind}
    for row in taken.rows:
        by_kind[row[0]].append(row)
    head = {
        "target": target,
        "identity": taken.identity,
        "written": written,
        "mailbox_function": taken.mailbox_function,
    }
    parts = [orjson.dumps(head)[:-1]]
    for kind, rows in by_kind.items():
        out = _OUT[kind]
        chunks = (
            orjson.dumps(
                [
                    (
                        user,
                        subject,
                        asked + offset,
                        None if answered is None else answered + offset,
                        ok,
                        None if answer is None else out(answer),
                    )
                    for _, user, subject, asked, answered, ok, answer in rows[i : i + CHUNK]
                ]
            )[1:-1]
            for i in range(0, len(rows), CHUNK)
        )
        parts += [b',"', kind.value.encode(), b'":[', b",".join(chunks), b"]"]
    parts.append(b"}")
    return b"".join(parts)


def parse(payload: bytes) -> Document:
    """A document decoded and checked whole; raises :class:`Unusable`."""
    try:
        return Document.model_validate_json(payload)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        problem = f"{err.error_count()} problem(s), first at {where}: {first['msg']}"
        raise Unusable(problem) from None


def _max_age(module: ModuleConfig) -> dict[Kind, float]:
    """How long an answer of each kind is served (discovery's for ever)."""
    return {
        Kind.LISTACCTS: math.inf,
        Kind.POPS: math.inf,
        Kind.TOTALS: module.unique_recipients.max_age,
        Kind.SENDERS: module.unique_recipients.max_age,
        Kind.MAIL_FLOW: module.mail_flow.max_age,
        Kind.MAILBOX: module.mailboxes.max_age,
    }


def _find(state: TargetState, kind: Kind, user: str, subject: str) -> Item[Any] | None:
    match kind:
        case Kind.LISTACCTS:
            return state.listaccts
        case Kind.POPS:
            return state.pops.get(user)
        case Kind.TOTALS:
            return state.totals.get(subject)
        case Kind.MAIL_FLOW:
            return state.mail_flow.get(subject)
        case Kind.SENDERS:
            return state.senders.get((user, subject))
        case Kind.MAILBOX:
            return state.mailboxes.get((user, subject))
    raise AssertionError(kind)


def restore(
    document: Document,
    module: ModuleConfig,
    users: Mapping[str, tuple[str, ...]],
    now: float,
    wall: float,
) -> TargetState:
    """A new state for ``module`` and ``users``, holding what ``document`` kept (``now``: the
    monotonic clock, ``wall``: the time of day). Answers past their ``max_age`` are left out:
    their items are asked as new. Raises :class:`Unusable` when the document does not fit."""
    offset = wall - now
    max_age = _max_age(module)
    rows: list[Row] = []
    for kind in Kind:
        for user, subject, asked, answered, ok, value in getattr(document, kind.value):
            # A clock set back while the exporter was down: no answer is younger than now.
            asked = min(asked - offset, now)
            if value is None:
                rows.append((kind, user, subject, asked, None, ok, None))
                continue
            if answered is None:
                raise Unusable(f"{kind.value} {user} {subject}: an answer without its time")
            answered = min(answered - offset, now)
            if now - answered <= max_age[kind]:
                rows.append((kind, user, subject, asked, answered, ok, value))
    # The inventory first, then everything in the order it was asked, as it happened: a total
    # heats the users whose breakdowns are older, a breakdown notes the total it was read with.
    first = {Kind.LISTACCTS: 0, Kind.POPS: 1}
    rows.sort(key=lambda r: (first.get(r[0], 2), r[3]))
    state = TargetState(module, users)
    auto = module.mailboxes.function == "auto"
    state.mailbox_function = document.mailbox_function if auto else module.mailboxes.function
    for kind, user, subject, asked, answered, ok, value in rows:
        item = _find(state, kind, user, subject)
        if item is None and kind is Kind.SENDERS and user not in state.accounts:
            # A user outside the inventory the server-wide answers named (nobody, say): its
            # breakdown's item, made as they make it (hot, if it is, once they are replayed).
            state.heat([user], [subject], -math.inf)
            item = _find(state, kind, user, subject)
        if item is None or item.in_flight:
            raise Unusable(f"{kind.value} {user} {subject}: not in the inventory the answers give")
        state.start(item, asked, urgent=False)
        if value is not None and answered is not None:
            state.answered(item, _IN[kind](value, user, subject), answered)
        state.finish(item, ok)
    return state
