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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from whm_exporter.collect.state import Item, Kind, TargetState
from whm_exporter.config import ModuleConfig
from whm_exporter.families import BY_KIND, FAMILIES, max_age_of
from whm_exporter.families.base import Family

X = TypeVar("X")
# One item: user, subject, when last asked, when last answered (None: never), whether the last
# call succeeded, and the answer (None: none yet). Times are wall-clock seconds.
Rows = list[tuple[str, str, float, float | None, bool, X | None]]


class Head(BaseModel):
    """What every kept state begins with; :data:`Document` adds its answers."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    target: str
    identity: str
    written: float
    mailbox_function: str | None


def _rows(kind: Kind) -> Any:
    """The type of one kind's rows, its answers as its family writes them."""
    return Rows[BY_KIND[kind].wire_type(kind)]  # type: ignore[misc]


# The schema of a kept state: the head, then one list of rows per kind, named after it, each
# answer as its family writes it (families/: the records' own fields).
_ANSWERS: dict[str, Any] = {kind.value: (_rows(kind), ...) for kind in Kind}
Document = create_model(
    "Document",
    __base__=Head,
    __doc__="The schema of a kept state: one list of rows per kind, named after it.",
    **_ANSWERS,
)


# The digest a kept state is filed under; the config owns it, the exporter asks for it here.


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


def capture(state: TargetState, identity: str, offset: float) -> Capture:
    """The state now (on the event loop: between two of its steps it is consistent). A call in
    flight is taken as it was before the call, as if abandoned; items never asked are left out."""
    rows: list[Row] = []
    for family in FAMILIES:
        for item in family.items(state):
            _capture(family, item, state, rows)
    return Capture(identity, state.mailbox_function, offset, rows)


def _capture(family: Family, item: Item[Any], state: TargetState, rows: list[Row]) -> None:
    asked = item.asked_before if item.in_flight else item.attempted_at
    answer = family.captured(item, state)
    if answer is None:
        if asked > -math.inf:
            rows.append((item.kind, item.user, item.subject, asked, None, item.last_ok, None))
        return
    answered = item.answered_at
    asked = max(asked, answered) if asked == -math.inf else asked
    rows.append((item.kind, item.user, item.subject, asked, answered, item.last_ok, answer))


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
        out = BY_KIND[kind].dump
        chunks = (
            orjson.dumps(
                [
                    (
                        user,
                        subject,
                        asked + offset,
                        None if answered is None else answered + offset,
                        ok,
                        None if answer is None else out(kind, answer),
                    )
                    for _, user, subject, asked, answered, ok, answer in rows[i : i + CHUNK]
                ]
            )[1:-1]
            for i in range(0, len(rows), CHUNK)
        )
        parts += [b',"', kind.value.encode(), b'":[', b",".join(chunks), b"]"]
    parts.append(b"}")
    return b"".join(parts)


def parse(payload: bytes) -> Head:
    """A document decoded and checked whole; raises :class:`Unusable`."""
    try:
        return Document.model_validate_json(payload)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        problem = f"{err.error_count()} problem(s), first at {where}: {first['msg']}"
        raise Unusable(problem) from None


def restore(
    document: Head,
    module: ModuleConfig,
    users: Mapping[str, tuple[str, ...]],
    now: float,
    wall: float,
) -> TargetState:
    """A new state for ``module`` and ``users``, holding what ``document`` kept (``now``: the
    monotonic clock, ``wall``: the time of day). Answers past their ``max_age`` are left out:
    their items are asked as new. Raises :class:`Unusable` when the document does not fit."""
    offset = wall - now
    max_age = max_age_of(module)
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
    rows.sort(key=lambda r: (BY_KIND[r[0]].replay_rank(r[0]), r[3]))
    state = TargetState(module, users)
    auto = module.mailboxes.function == "auto"
    state.mailbox_function = document.mailbox_function if auto else module.mailboxes.function
    for kind, user, subject, asked, answered, ok, value in rows:
        family = BY_KIND[kind]
        item = family.find(state, kind, user, subject)
        if item is None:
            family.restored_outside(state, kind, user, subject)
            item = family.find(state, kind, user, subject)
        if item is None or item.in_flight:
            raise Unusable(f"{kind.value} {user} {subject}: not in the inventory the answers give")
        state.start(item, asked, urgent=False)
        if value is not None and answered is not None:
            state.answered(item, family.load(kind, value, user, subject), answered)
        state.finish(item, ok)
    return state
