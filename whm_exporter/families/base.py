"""What every signal family declares, and what the machinery knows of one.

A family (discovery, mailboxes, senders, per-user totals, mail flow, server settings, logins,
Exim's queue, mail DNS) is one module under ``families/`` holding one :class:`Family`
instance: the WHM call it makes for an item and how its answer is kept, how long an answer is
refreshed and served (its config section), how the answer is written to the kept-state file
and read back, and what a probe serves of it and renders as metric families (names and HELP).
The scheduler, the runner, persistence and the probe ask the registry (``families.BY_KIND``,
``families.FAMILIES``) and never name a family.
"""

from __future__ import annotations

import dataclasses
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, get_type_hints

from whm_exporter.collect.state import Item, Kept, Kind, TargetState
from whm_exporter.config import ModuleConfig, Window
from whm_exporter.whm.client import StreamReader
from whm_exporter.whm.errors import WHMError

if TYPE_CHECKING:
    from whm_exporter.series import Family as MetricFamily
    from whm_exporter.snapshot import Snapshot

R = TypeVar("R")
# What a probe counts items as: answered since the previous scrape, earlier, or not at all.
STATES = ("fresh", "kept", "missing")

# What a good answer still had wrong (records refused, a list cut short): reported, not fatal.
Problems = list[WHMError]


@dataclass(frozen=True, slots=True)
class Call:
    # The name metrics and logs use: the WHM function, or the UAPI one behind uapi_cpanel.
    function: str
    # What the debug page and the log name: an address, "user window", or nothing.
    subject: str
    # A tuple value repeats its parameter (validate_current_spfs: domain=a&domain=b).
    params: Mapping[str, str | int | tuple[str, ...]]
    keep: Callable[[Any, float], Problems | None]
    # The WHM API 1 function in the URL, when it is not ``function``.
    whm_function: str | None = None
    # An answer too big to hold decoded is read as it arrives: a new reader per call, whose
    # result ``keep`` gets in place of the decoded body (whm/client.py: StreamReader).
    stream: Callable[[], StreamReader] | None = None
    # This call's own limits, when the module's (request_timeout, max_response_bytes) do not
    # fit its answer.
    timeout: float | None = None
    max_bytes: int | None = None
    # One item asked in several calls (batches): the next call once this one is kept (None
    # when the item is answered), and the call to make instead when this one failed (None:
    # the item failed, unless on_error answered it: a batch's last part left out).
    then: Callable[[], Call | None] | None = None
    on_error: Callable[[WHMError], Call | None] | None = None

    @property
    def endpoint(self) -> str:
        return self.whm_function or self.function


def span(
    module: ModuleConfig,
    windows: Iterable[Window],
    label: str,
    wall: float,
    names: tuple[str, str] = ("start_time", "end_time"),
) -> dict[str, str | int]:
    """Start and end of the window ``label``. WHM refuses an end ahead of its own clock
    (get_unique_recipient_count_per_sender_for_user: "The end_time parameter cannot be greater
    than the current time"): stay ``end_time_lag`` behind ours, for every windowed call."""
    seconds = next(w.seconds for w in windows if w.label == label)
    end = int(wall - module.unique_recipients.end_time_lag)
    return {names[0]: end - int(seconds), names[1]: end}


class Fields(Generic[R]):
    """How a record is written as a kept-state row: the dataclass's own fields in declaration
    order, less those the item's key gives back (``from_key``: field -> "user" or "subject").
    Renaming or reordering a field changes the kept-state format (storage.VERSION)."""

    __slots__ = ("_get", "_intern", "from_key", "record", "wire", "written")

    def __init__(
        self,
        record: type[R],
        *,
        from_key: Mapping[str, str] | None = None,
        intern: tuple[str, ...] = (),
    ) -> None:
        self.record = record
        self.from_key = dict(from_key or {})
        names = [f.name for f in dataclasses.fields(record)]  # type: ignore[arg-type]
        self.written = tuple(n for n in names if n not in self.from_key)
        # attrgetter of one name gives a scalar, not a row.
        assert len(self.written) >= 2, record
        self._get = attrgetter(*self.written)
        self._intern = intern
        hints = get_type_hints(record)
        # The row's type, for the kept-state schema.
        self.wire: Any = tuple[tuple(hints[n] for n in self.written)]  # type: ignore[misc]

    def out(self, record: R) -> tuple[Any, ...]:
        return self._get(record)

    def into(self, row: Sequence[Any], user: str = "", subject: str = "") -> R:
        values = dict(zip(self.written, row, strict=True))
        for name in self._intern:
            # Such names repeat across every account: one string each, as live answers keep.
            values[name] = sys.intern(values[name])
        key = {"user": user, "subject": subject}
        for name, part in self.from_key.items():
            values[name] = key[part]
        return self.record(**values)


class Served:
    """One probe's view of the state: tells served answers from the rest and counts items by
    state and function, for the families serving their parts."""

    def __init__(self, now: float, fresh_since: float, named: set[str]) -> None:
        self.now = now
        self.fresh_since = fresh_since
        # Users the server-wide answers name that the target's user filters keep.
        self.named = named
        self.items: Counter[tuple[str, str]] = Counter()
        self.age: dict[str, float] = {}
        self.expired = 0
        # Series left out by filters and limits, by metric.
        self.dropped: Counter[str] = Counter()

    def take(self, items: Iterable[Item[Any]], function: str, max_age: float) -> list[Any]:
        answers = []
        for state in STATES:
            self.items[(function, state)] += 0
        for item in items:
            age = self.now - item.answered_at
            if item.answer is None or age > max_age:
                # Too slow, not refused: WHM's refusals have their own errors and log lines.
                self.expired += item.answer is not None and item.last_ok
                self.items[(function, "missing")] += 1
                continue
            fresh = item.answered_at >= self.fresh_since
            self.items[(function, "fresh" if fresh else "kept")] += 1
            self.age[function] = max(self.age.get(function, 0.0), age)
            answers.append(item.answer)
        return answers


class Family:
    """One signal family. The class attributes place it; the methods are its whole contract
    with the machinery."""

    # Its config section (a ModuleConfig attribute): refresh and max_age.
    section: ClassVar[str]
    # The item kinds it owns.
    kinds: ClassVar[tuple[Kind, ...]]
    # Where its metric families stand in a probe's output (lowest first).
    exposition_rank: ClassVar[int]
    # Its place in the schedule's tier (c), items never answered (lowest first); None for a
    # server-wide family, asked first of all (tier a). Families of one rank go in the
    # registry's order.
    first_rank: ClassVar[int | None] = None
    # Whether an item whose call failed before it was ever answered waits its refresh, as a
    # refresh does (within the load budget), instead of being asked again at every probe as a
    # first answer: for calls a token may be refused for good (a reseller's).
    failure_waits_refresh: ClassVar[bool] = False
    # Whether a probe waits for its calls: not for a family whose items take many calls (the
    # mail DNS, in batches) and are hours apart; the probe serves what they last answered.
    probe_waits: ClassVar[bool] = True
    # Whether a probe waits for a renewal of its items too, not only their first call: not for
    # Exim's queue, whose call takes as long as the queue is big (a scrape's whole deadline on a
    # big one); a probe serves the last reading meanwhile.
    refresh_waited: ClassVar[bool] = True
    # Whether its items are renewed as soon as their refresh is due, ahead of the oldest
    # answers of the other families (within the load budget still): a few server-wide items,
    # each cheap next to a pass over every mailbox. Oldest first, they would wait a whole pass,
    # on a big or slow server longer than their max_age.
    renewed_when_due: ClassVar[bool] = False

    # --- config -----------------------------------------------------------------------------

    def refresh(self, module: ModuleConfig, kind: Kind) -> float:
        """How long an answer of ``kind`` is not asked again."""
        return float(getattr(module, self.section).refresh)

    def max_age(self, module: ModuleConfig, kind: Kind) -> float:
        """How long an answer of ``kind`` is served."""
        return float(getattr(module, self.section).max_age)

    def windows(self, module: ModuleConfig) -> tuple[Window, ...]:
        """The time windows its calls ask about."""
        return ()

    # --- calls ------------------------------------------------------------------------------

    def plan(self, item: Item[Any], state: TargetState, wall: float) -> Call | None:
        """The call that answers ``item`` now (``wall``: the time of day, for windows); None
        when there is nothing to ask (the family then answers the item itself, or keeps what
        it had)."""
        raise NotImplementedError

    def fallback(self, state: TargetState, call: Call, err: WHMError) -> bool:
        """Learn from a call the server refused; True when it should be made again."""
        return False

    # --- the kept-state file ----------------------------------------------------------------

    def items(self, state: TargetState) -> Iterator[Item[Any]]:
        """Every item of its kinds the state holds."""
        raise NotImplementedError

    def find(self, state: TargetState, kind: Kind, user: str, subject: str) -> Item[Any] | None:
        raise NotImplementedError

    def captured(self, item: Item[Any], state: TargetState) -> Any:
        """What is kept of an item's answer (on the event loop, by reference)."""
        return item.answer

    def wire_type(self, kind: Kind) -> Any:
        """The type of a kept answer of ``kind``, as the kept-state schema checks it."""
        raise NotImplementedError

    def dump(self, kind: Kind, answer: Any) -> Any:
        """A captured answer as plain lists (in the writer thread)."""
        raise NotImplementedError

    def load(self, kind: Kind, value: Any, user: str, subject: str) -> Any:
        """A kept answer as the live answers make it."""
        raise NotImplementedError

    def replay_rank(self, kind: Kind) -> int:
        """Restore replays lower ranks first (the inventory before what it holds), then in
        the order the items were asked."""
        return 2

    def restored_outside(self, state: TargetState, kind: Kind, user: str, subject: str) -> None:
        """Make a kept item the inventory does not give (nothing, but for senders)."""

    # --- the probe --------------------------------------------------------------------------

    def serve(self, state: TargetState, served: Served) -> Mapping[str, Any]:
        """Its part of a probe's snapshot: Snapshot fields by name."""
        raise NotImplementedError

    def render(self, s: Snapshot) -> list[MetricFamily]:
        """Its metric families, named and explained here and nowhere else."""
        raise NotImplementedError

    def debug(self, s: Snapshot) -> list[str]:
        """Lines for the debug page (/probe?debug=true) that no metric holds: a heading, then
        indented lines; nothing when there is nothing to say."""
        return []


class KeptFamily(Family):
    """A family whose answers are :class:`Kept` records (what filters and limits leave, and how
    many series they dropped), written as that count, then each record's ``rows``."""

    rows: ClassVar[Fields[Any]]

    def wire_type(self, kind: Kind) -> Any:
        return tuple[int, list[self.rows.wire]]  # type: ignore[name-defined]

    def dump(self, kind: Kind, answer: Kept[Any]) -> Any:
        return answer.dropped, [self.rows.out(r) for r in answer.records]

    def load(self, kind: Kind, value: Any, user: str, subject: str) -> Any:
        dropped, records = value
        return Kept(tuple(self.rows.into(r, user, subject) for r in records), dropped)
