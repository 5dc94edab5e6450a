"""What one target has learned, kept across scrapes: its users and addresses, and for every item
(the server's per-user totals, a user's senders per window, an address's mailboxes, a user's
address list) the last good answer and when it came.

Pure bookkeeping: no I/O and no clock of its own (every method is told ``now``). Items wait for
their next call in lanes, one per kind and stage, each in the order its items were last tried,
so the scheduler finds the most deserving item of a lane at its head.
"""

from __future__ import annotations

import enum
import math
from collections import Counter, OrderedDict, deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from whm_exporter.config import ModuleConfig
from whm_exporter.selection import selected
from whm_exporter.snapshot import CallRecord
from whm_exporter.whm.errors import REASONS
from whm_exporter.whm.parse import Account, Mailbox, MailFlow, TweakSetting

A = TypeVar("A")
# The debug page shows the calls since the previous scrape; a stalled Prometheus must not make
# that list grow without end.
LOG_LIMIT = 10_000


class Kind(enum.StrEnum):
    """A kind of item, named after the WHM function that answers it. (A str enum: its members
    hash as strings do, in C, and the scheduler looks them up at every call.)"""

    LISTACCTS = "listaccts"
    POPS = "list_pops_for"
    TOTALS = "get_unique_sender_recipient_count_per_user"
    MAIL_FLOW = "emailtrack_user_stats"
    SENDERS = "get_unique_recipient_count_per_sender_for_user"
    # get_mailbox_status_list or get_mailbox_status: which one is learned per target.
    MAILBOX = "mailbox"
    # One of cPanel's Tweak Settings (module Main), one key a call.
    SETTING = "get_tweaksetting"
    # cPHulk, one call each: whether it is on, the failed logins it holds, and what it blocks
    # (users, addresses, addresses for a day).
    CPHULK = "cphulk_status"
    LOGIN_FAILURES = "get_cphulk_failed_logins"
    USER_BLOCKS = "get_cphulk_user_brutes"
    IP_BLOCKS = "get_cphulk_brutes"
    EXCESSIVE_BLOCKS = "get_cphulk_excessive_brutes"
    # Exim's queue, the whole of it in one call.
    MAIL_QUEUE = "fetch_mail_queue"
    # Whether cPanel finds each mail domain's SPF, DKIM and PTR records valid: one item each,
    # its domains asked in batches.
    SPF = "validate_current_spfs"
    DKIM = "validate_current_dkims"
    PTR = "validate_current_ptrs"


# One call answers for the whole server: the spam signal's first line.
SERVER_WIDE = (Kind.TOTALS, Kind.MAIL_FLOW)
# The Tweak Settings read (get_tweaksetting, module Main): cPanel's outbound-spam detection and
# send limits, one item each, so a key refused or of a bad value costs only itself.
SETTING_KEYS = (
    "email_outbound_spam_detect_enable",
    "email_outbound_spam_detect_threshold",
    "email_outbound_spam_detect_action",
    "maxemailsperhour",
    "email_send_limits_max_defer_fail_percentage",
    "email_send_limits_min_defer_fail_to_trigger_protection",
)


# cPHulk's calls, whether it is on first: one item each, so a function refused costs only itself.
LOGIN_KINDS = (
    Kind.CPHULK,
    Kind.LOGIN_FAILURES,
    Kind.USER_BLOCKS,
    Kind.IP_BLOCKS,
    Kind.EXCESSIVE_BLOCKS,
)


# The mail DNS checks, one item per record kind (families/dns_auth.py).
DNS_KINDS = (Kind.SPF, Kind.DKIM, Kind.PTR)


class Stage(enum.StrEnum):
    NEW = "never tried"
    FAILED = "tried, never answered"
    KEPT = "answered"


@dataclass(eq=False, slots=True)
class Item(Generic[A]):
    """One thing WHM is asked about. ``subject`` is the address (mailboxes), the window label
    (senders, totals, mail flow), the key (settings) or empty."""

    kind: Kind
    user: str = ""
    subject: str = ""
    answer: A | None = None
    answered_at: float = -math.inf
    attempted_at: float = -math.inf
    # attempted_at before the call in flight: restored when that call is abandoned.
    asked_before: float = -math.inf
    # Whether the last call for it succeeded.
    last_ok: bool = False
    in_flight: bool = False
    # Started because it carried the spam signal (server-wide, hot, or senders without totals).
    urgent: bool = False
    # Dropped from the inventory while its call was in flight: the answer is thrown away.
    gone: bool = False
    lane: Lane | None = None
    # Senders: the user's per-user total when this breakdown was answered (None: unknown).
    basis: int | None = None
    # Senders of a user outside the inventory, asked only while hot (never in a lane).
    outside: bool = False
    # listaccts: a server-wide answer named a user it did not list; ask again soon.
    early: bool = False


class Lane:
    """Items in the order they were last tried (items never tried keep their arrival order)."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: OrderedDict[Item[Any], None] = OrderedDict()

    def append(self, item: Item[Any]) -> None:
        self._items[item] = None
        item.lane = self

    def remove(self, item: Item[Any]) -> None:
        del self._items[item]
        item.lane = None

    def __iter__(self) -> Iterator[Item[Any]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def head(self) -> Item[Any] | None:
        return next(iter(self._items), None)


@dataclass(frozen=True, slots=True)
class Addresses:
    """A user's addresses from discovery and, with list_pops_with_disk, their disk use."""

    addresses: tuple[str, ...]
    disk: tuple[Mailbox, ...] = ()


@dataclass(frozen=True, slots=True)
class Kept(Generic[A]):
    """What an answer leaves after filters and limits, and how many series they left out."""

    records: tuple[A, ...]
    dropped: int = 0


# The breakdown of a user the per-user totals show sending to nobody.
_NOTHING_SENT: Kept[Any] = Kept(())


@dataclass(slots=True)
class Tally:
    """What happened since the previous scrape answered: taken (and reset) by each scrape."""

    calls: Counter[str] = field(default_factory=Counter)
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    abandoned: Counter[str] = field(default_factory=Counter)
    log: deque[CallRecord] = field(default_factory=lambda: deque(maxlen=LOG_LIMIT))
    # Entries ever appended to ``log`` (which drops its oldest past LOG_LIMIT).
    logged: int = 0
    # None while no call finished: whm_up then repeats what the previous scrape said.
    answered: bool | None = None


class TargetState:
    """The inventory and every item of one target, and the lanes its items wait in."""

    def __init__(self, module: ModuleConfig, explicit: Mapping[str, tuple[str, ...]]) -> None:
        self.module = module
        self.explicit = explicit
        self.lanes: dict[tuple[Kind, Stage], Lane] = {
            (kind, stage): Lane() for kind in Kind for stage in Stage
        }
        # Senders whose user the last totals or mail flow showed at or above its threshold,
        # biggest first; each is also in its own lane.
        self.hot: OrderedDict[Item[Any], None] = OrderedDict()
        # Server-wide items wait in no lane: the scheduler looks at each of them first.
        recipients = module.unique_recipients
        totals = recipients.windows if recipients.enabled and recipients.per_user_totals else ()
        self.totals: dict[str, Item[dict[str, int]]] = {
            w.label: Item(Kind.TOTALS, subject=w.label) for w in totals
        }
        flow = module.mail_flow.windows if module.mail_flow.enabled else ()
        self.mail_flow: dict[str, Item[dict[str, MailFlow]]] = {
            w.label: Item(Kind.MAIL_FLOW, subject=w.label) for w in flow
        }
        self.server_wide: list[Item[Any]] = [*self.totals.values(), *self.mail_flow.values()]
        self.listaccts: Item[dict[str, Account]] | None = None
        # Every user the last good listaccts named, before filters and skip_suspended.
        self.listed: set[str] = set()
        # Senders of users outside the inventory that the server-wide answers showed hot.
        self.outside: set[Item[Any]] = set()
        self.pops: dict[str, Item[Addresses]] = {}
        self.senders: dict[tuple[str, str], Item[Any]] = {}
        self.mailboxes: dict[tuple[str, str], Item[Any]] = {}
        # cPanel's server settings, one item per key (families/server_settings.py names them).
        self.settings: dict[str, Item[TweakSetting]] = {}
        # cPHulk's items, by kind (families/logins.py).
        self.logins: dict[Kind, Item[Any]] = {}
        # Exim's queue (families/mail_queue.py).
        self.queue: Item[Any] | None = None
        # The mail DNS checks, by kind (families/dns_auth.py): in a lane once the inventory
        # names a domain, so none is asked with nothing to check.
        self.dns_auth: dict[Kind, Item[Any]] = {}
        # The users scraped and their accounts (explicit, discovered, main mailbox).
        self.accounts: dict[str, tuple[str, ...]] = {}
        # domain_owners(), until the inventory changes (the probe reads it every time).
        self._owners: dict[str, str] | None = None
        self.mailbox_function: str | None = None
        # The items whose calls are in flight (a few: at most the bound's size).
        self.in_flight: set[Item[Any]] = set()
        self.urgent_in_flight = 0
        self.epoch_start = -math.inf
        self.scraped_at = -math.inf
        # When the previous scrape was served: answers since then are fresh.
        self.last_served = -math.inf
        self.interval: float | None = None
        self.tally = Tally()
        # Failed calls by (function, reason) since this state began, never reset by a scrape:
        # what every Prometheus of an HA pair sees whole. Every reason of a function called
        # starts at 0, so increase() sees its first error.
        self.errors_total: dict[str, Counter[str]] = {}
        self.up = False
        self._build()

    @property
    def size(self) -> int:
        """Every item there is to ask."""
        listaccts = 0 if self.listaccts is None else 1
        return (
            len(self.pops)
            + len(self.mailboxes)
            + len(self.senders)
            + len(self.server_wide)
            + len(self.settings)
            + len(self.logins)
            + (self.queue is not None)
            + len(self.dns_auth)
            + listaccts
        )

    # --- the inventory -------------------------------------------------------------------

    def _build(self) -> None:
        if self.module.discovery.enabled:
            self.listaccts = self._new(Kind.LISTACCTS)
        if self.module.server_settings.enabled:
            self.settings = {key: self._new(Kind.SETTING, subject=key) for key in SETTING_KEYS}
        if self.module.logins.enabled:
            self.logins = {kind: self._new(kind) for kind in LOGIN_KINDS}
        if self.module.mail_queue.enabled:
            self.queue = self._new(Kind.MAIL_QUEUE)
        if self.module.dns_auth.enabled:
            self.dns_auth = {kind: Item(kind) for kind in DNS_KINDS}
        for user in self.explicit:
            self._sync_user(user)

    def _new(self, kind: Kind, user: str = "", subject: str = "") -> Item[Any]:
        item: Item[Any] = Item(kind, user, subject)
        self.lanes[(kind, Stage.NEW)].append(item)
        return item

    def _listed(self, item: Item[dict[str, Account]], users: dict[str, Account]) -> None:
        """A good listaccts answer: keep the users to scrape (filters and suspension applied),
        and give new users their items and gone users' items up."""
        cfg = self.module.discovery
        kept = {
            name: u
            for name, u in users.items()
            if selected(name, cfg.include_users, cfg.exclude_users)
            and not (cfg.skip_suspended and u.suspended)
        }
        before = item.answer or {}
        item.answer = kept
        self._owners = None
        self.listed = set(users)
        new = sorted(kept.keys() - before.keys())
        for user in new:
            self.pops[user] = self._new(Kind.POPS, user)
            self._sync_user(user)
        if new:
            # The totals came first (they go first): what they vouch for holds for new users
            # too. (Those they showed hot are so already, as outsiders until now.)
            for totals in self.totals.values():
                self._confirm(totals)
        for user in before.keys() - kept.keys():
            self._drop(self.pops.pop(user))
            if user in self.explicit:
                self._sync_user(user)
            else:
                self._drop_user(user)

    def _wanted_accounts(self, user: str) -> tuple[str, ...]:
        cfg = self.module.discovery
        found: list[str] = []
        if user in self.pops:
            listed = self.pops[user].answer
            found = [*listed.addresses] if listed is not None else []
            if cfg.main_account:
                found.append(user)
        discovered = {a for a in found if selected(a, cfg.include_accounts, cfg.exclude_accounts)}
        return tuple(sorted(discovered.union(self.explicit.get(user, ()))))

    def _sync_user(self, user: str) -> None:
        """Create the items a user needs and drop those it no longer has."""
        before = self.accounts.get(user, ())
        accounts = self._wanted_accounts(user)
        self.accounts[user] = accounts
        self._owners = None
        if self.module.mailboxes.enabled:
            for account in accounts:
                if (user, account) not in self.mailboxes:
                    self.mailboxes[(user, account)] = self._new(Kind.MAILBOX, user, account)
            for account in set(before).difference(accounts):
                self._drop(self.mailboxes.pop((user, account)))
        recipients = self.module.unique_recipients
        if recipients.enabled:
            for window in recipients.windows:
                found = self.senders.get((user, window.label))
                if found is None:
                    self.senders[(user, window.label)] = self._new(Kind.SENDERS, user, window.label)
                elif found.outside:
                    # Hot before it was listed: one of the inventory's now.
                    found.outside = False
                    self.outside.discard(found)
                    if not found.in_flight:
                        self._lane_of(found).append(found)
        self._queue_dns(user, accounts)

    def _queue_dns(self, user: str, accounts: tuple[str, ...]) -> None:
        """The mail DNS items join their lanes when the inventory first names a domain (a
        user's main domain or an address's), once listaccts has answered: a pass that began
        with the explicit users' domains alone would ask the rest in batches of their own."""
        waiting = [i for i in self.dns_auth.values() if i.lane is None and not i.in_flight]
        listing = self.listaccts.answer if self.listaccts is not None else {}
        if not waiting or listing is None:
            return
        account = listing.get(user)
        if (account is not None and account.domain) or any("@" in a for a in accounts):
            for item in waiting:
                self._lane_of(item).append(item)

    def _drop_user(self, user: str) -> None:
        self._owners = None
        for account in self.accounts.pop(user):
            if (item := self.mailboxes.pop((user, account), None)) is not None:
                self._drop(item)
        for window in self.module.unique_recipients.windows:
            if (item := self.senders.pop((user, window.label), None)) is not None:
                self._drop(item)

    def _drop(self, item: Item[Any]) -> None:
        if item.lane is not None:
            item.lane.remove(item)
        self.hot.pop(item, None)
        self.outside.discard(item)
        item.gone = True

    def _lane_of(self, item: Item[Any]) -> Lane:
        """The lane an item waits in, by what it holds."""
        if item.answer is not None:
            stage = Stage.KEPT
        else:
            stage = Stage.NEW if item.attempted_at == -math.inf else Stage.FAILED
        return self.lanes[(item.kind, stage)]

    def domain_owners(self) -> dict[str, str]:
        """Every mail domain of the inventory and the user it belongs to: the user whose main
        domain it is (listaccts), else the first by name with an address at it."""
        if self._owners is None:
            self._owners = self._find_owners()
        return self._owners

    def _find_owners(self) -> dict[str, str]:
        users = sorted(self.accounts)
        listing = (self.listaccts.answer if self.listaccts is not None else None) or {}
        owners: dict[str, str] = {}
        for user in users:
            account = listing.get(user)
            if account is not None and account.domain:
                owners.setdefault(account.domain, user)
        for user in users:
            for address in self.accounts[user]:
                domain = address.rpartition("@")[2].lower()
                if "@" in address and domain:
                    owners.setdefault(domain, user)
        return owners

    # --- calls -----------------------------------------------------------------------------

    def start(self, item: Item[Any], now: float, *, urgent: bool) -> None:
        """``item``'s call begins: it leaves its lanes until it is answered or fails."""
        if item.lane is not None:
            item.lane.remove(item)
        self.hot.pop(item, None)
        item.in_flight = True
        item.urgent = urgent
        item.early = False
        item.asked_before = item.attempted_at
        item.attempted_at = now
        self.in_flight.add(item)
        if urgent:
            self.urgent_in_flight += 1

    def answered(self, item: Item[Any], answer: Any, now: float) -> None:
        """A good answer for ``item``, already parsed and filtered; what it changes follows."""
        item.answered_at = now
        if item.gone:
            return
        if item.kind is Kind.LISTACCTS:
            self._listed(item, answer)
            return
        item.answer = answer
        if item.kind is Kind.POPS:
            self._sync_user(item.user)
        elif item.kind is Kind.SENDERS:
            totals = self.totals.get(item.subject)
            counts = None if totals is None else totals.answer
            item.basis = None if counts is None else counts.get(item.user, 0)
        elif item.kind in SERVER_WIDE:
            self._heat_from(item)
            self._outsiders(now)

    def _heat_from(self, item: Item[Any]) -> None:
        """Heat the users a server-wide answer shows sending: the
        totals at or above ``priority_threshold`` (exact: a user's total is never below any one
        of its senders' counts), or mail that bounces or trips cPanel's own limits."""
        answer = item.answer
        if answer is None:
            return
        if item.kind is Kind.TOTALS:
            threshold = self.module.unique_recipients.priority_threshold
            by_count = sorted(answer.items(), key=lambda uc: (-uc[1], uc[0]))
            self.heat([u for u, n in by_count if n >= threshold], [item.subject], item.answered_at)
            self._confirm(item)
            return
        threshold = self.module.mail_flow.defer_fail_threshold
        hot = [
            f
            for f in answer.values()
            if f.defer_failures >= threshold or f.reached_max_emails or f.reached_max_defer_fail
        ]
        hot.sort(key=lambda f: (-f.defer_failures, f.user))
        windows = [w.label for w in self.module.unique_recipients.windows]
        self.heat([f.user for f in hot], windows, item.answered_at)

    def _confirm(self, totals: Item[dict[str, int]]) -> None:
        """Quiet users' breakdowns the new totals vouch for count as read again, without a
        call: those of users with no remote recipients at all (nothing to break down), and
        those whose total is what it was when their breakdown was read. A quiet user's total
        is below ``priority_threshold`` and no sender's count exceeds its user's total, so no
        sender of theirs can have crossed a threshold since."""
        answer = totals.answer
        if answer is None:
            return
        at = totals.answered_at
        threshold = self.module.unique_recipients.priority_threshold
        lane = self.lanes[(Kind.SENDERS, Stage.KEPT)]
        for (user, window), item in self.senders.items():
            if window != totals.subject or item.in_flight or item.outside:
                continue
            if item.answered_at >= at:
                continue
            total = answer.get(user, 0)
            if total >= threshold or (total and total != item.basis):
                continue
            # A basis is set only with an answer: here the item has one, or sent nothing.
            if not total:
                item.answer = _NOTHING_SENT
            item.answered_at = item.attempted_at = at
            # What it was vouched for with (0: nothing sent, whatever was read before).
            item.basis = total
            item.last_ok = True
            if item.lane is not None:
                item.lane.remove(item)
            lane.append(item)

    def finish(self, item: Item[Any], ok: bool, *, abandoned: bool = False) -> None:
        """``item``'s call is over (answered, failed or abandoned): back into a lane. An
        abandoned call asked nothing: the item is as it was before."""
        item.in_flight = False
        self.in_flight.discard(item)
        if abandoned:
            item.attempted_at = item.asked_before
        else:
            item.last_ok = ok
        if item.urgent:
            self.urgent_in_flight -= 1
        if item.gone or item.outside or item.kind in SERVER_WIDE:
            return
        self._lane_of(item).append(item)

    def heat(self, users: list[str], windows: list[str], at: float) -> None:
        """``users`` (hottest first) showed the spam signal in a server-wide answer: their
        senders for ``windows`` go first when older than that answer. A user outside the
        inventory (not listed yet, a system user such as ``nobody``, suspended, not among
        the target's explicit users) gets a sender item for it, kept while WHM names it."""
        recipients = self.module.unique_recipients
        cfg = self.module.discovery
        for user in users:
            # An explicit user may be outside the filters: only outsiders are filtered here.
            outsider_ok = recipients.enabled and selected(
                user, cfg.include_users, cfg.exclude_users
            )
            for window in windows:
                item = self.senders.get((user, window))
                if item is None:
                    if not outsider_ok:
                        continue
                    item = self.senders[(user, window)] = Item(
                        Kind.SENDERS, user, window, outside=True
                    )
                    self.outside.add(item)
                if not item.in_flight and item.answered_at < at:
                    self.hot[item] = None

    def named(self) -> set[str]:
        """Every user the server-wide answers held now name."""
        users: set[str] = set()
        for item in self.server_wide:
            if item.answer is not None:
                users.update(item.answer)
        return users

    def _outsiders(self, now: float) -> None:
        """After a server-wide answer: outsiders WHM no longer names lose their senders, and a
        user listaccts did not name asks for an early re-list (at most one per tenth of
        ``discovery.refresh``): a new account, perhaps created to send spam."""
        named = self.named()
        for item in [i for i in self.outside if i.user not in named]:
            del self.senders[(item.user, item.subject)]
            self._drop(item)
        listing = self.listaccts
        if listing is None or listing.answer is None or listing.in_flight:
            return
        cfg = self.module.discovery
        unknown = any(
            u not in self.listed and selected(u, cfg.include_users, cfg.exclude_users)
            for u in named
        )
        if unknown and now - listing.attempted_at >= cfg.refresh / 10:
            listing.early = True

    def record(self, call: CallRecord, *, answered: bool, call_ended: bool = True) -> None:
        """A call that ended (or, not ``call_ended``, a problem inside a kept answer)."""
        tally = self.tally
        if call_ended:
            tally.calls[call.function] += 1
        tally.log.append(call)
        tally.logged += 1
        errors = self.errors_total.get(call.function)
        if errors is None:
            errors = self.errors_total[call.function] = Counter(dict.fromkeys(REASONS, 0))
        if call.outcome != "success":
            tally.errors[(call.function, call.outcome)] += 1
            errors[call.outcome] += 1
        tally.answered = bool(tally.answered) or answered

    def abandon(self, function: str) -> None:
        self.tally.abandoned[function] += 1

    def take_tally(self) -> Tally:
        """What happened since the previous scrape; the next starts from nothing."""
        tally, self.tally = self.tally, Tally()
        if tally.answered is not None:
            self.up = tally.answered
        return tally

    def peek_tally(self) -> tuple[Tally, bool]:
        """The tally so far and whether WHM is up by it, left for the next scrape to take."""
        tally = self.tally
        return tally, self.up if tally.answered is None else tally.answered

    # --- probes ----------------------------------------------------------------------------

    def new_epoch(self, now: float, *, scrape: bool = True) -> None:
        """A probe arrived with no other waiting: every item answered before now may be asked
        again (within its refresh). Only scrapes (not a person's debug probe) measure the
        scrape interval."""
        if scrape:
            if self.scraped_at > -math.inf:
                self.interval = now - self.scraped_at
            self.scraped_at = now
        self.epoch_start = now
