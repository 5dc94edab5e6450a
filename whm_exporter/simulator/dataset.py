"""The simulator's generated server: users, email accounts, folders and senders.

Everything is a pure function of the seed and the sizes, computed on demand, so a server of
10,000 accounts costs nothing to hold and a test can ask what any answer must contain.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import cached_property

_WORDS = (
    "acme",
    "birch",
    "cedar",
    "delta",
    "ember",
    "fjord",
    "gale",
    "harbor",
    "iris",
    "juniper",
    "kestrel",
    "lumen",
    "maple",
    "nimbus",
    "orchid",
    "pine",
    "quartz",
    "raven",
    "sable",
    "tundra",
)
_LOCALS = ("info", "sales", "support", "office", "billing", "hello", "jobs", "news", "admin")
_FOLDERS = (
    "INBOX",
    "INBOX.Sent",
    "INBOX.Drafts",
    "INBOX.Trash",
    "INBOX.Junk",
    "INBOX.Archive",
    "INBOX.Newsletters",
    "INBOX.Invoices",
)
# cPanel's default outbound-spam threshold is 500 unique recipients per sender per hour (Tweak
# Setting email_outbound_spam_detect_threshold): the heavy sender is far above.
HEAVY_SENDER_RATE = 1200


@dataclass(frozen=True, slots=True)
class FolderData:
    name: str
    messages: int
    vsize: int


@dataclass(frozen=True, slots=True)
class MailFlowData:
    sent: int
    delivered: int
    deferrals: int
    failures: int
    defer_failures: int
    sent_bytes: int
    reached_max_emails: bool = False
    reached_max_defer_fail: bool = False


def _rng(*parts: object) -> random.Random:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


@dataclass(frozen=True)
class Dataset:
    """A deterministic WHM server. ``accounts`` email addresses spread over ``users`` cPanel users;
    every 10th user is suspended; the first address of the first user is a heavy sender."""

    seed: int = 1
    accounts: int = 20
    users: int = 5
    folders: int = 5
    heavy_sender: bool = True

    @cached_property
    def user_names(self) -> tuple[str, ...]:
        return tuple(f"{_WORDS[i % len(_WORDS)]}{i + 1:03d}" for i in range(max(1, self.users)))

    def domain(self, user: str) -> str:
        return f"{user}.example"

    def suspended(self, user: str) -> bool:
        return self.user_names.index(user) % 10 == 9

    @cached_property
    def pops(self) -> dict[str, tuple[str, ...]]:
        """Email addresses per user, as list_pops_for gives them (sorted, no main account)."""
        out: dict[str, list[str]] = {u: [] for u in self.user_names}
        for i in range(self.accounts):
            user = self.user_names[i % len(self.user_names)]
            n = len(out[user])
            local = _LOCALS[n % len(_LOCALS)] + ("" if n < len(_LOCALS) else str(n // len(_LOCALS)))
            out[user].append(f"{local}@{self.domain(user)}")
        return {u: tuple(sorted(a)) for u, a in out.items()}

    def owner(self, account: str) -> str | None:
        """The cPanel user of an address or of a main account (its username)."""
        if account in self.pops:
            return account
        domain = account.rpartition("@")[2]
        user = domain.removesuffix(".example")
        return user if account in self.pops.get(user, ()) else None

    def folder_names(self) -> tuple[str, ...]:
        extra = tuple(f"INBOX.Folder{k}" for k in range(max(0, self.folders - len(_FOLDERS))))
        return (_FOLDERS + extra)[: max(1, self.folders)]

    def mailbox(self, account: str) -> list[FolderData]:
        """The folders of an address or of a user's main mailbox."""
        out = []
        for name in self.folder_names():
            rng = _rng(self.seed, account, name)
            messages = rng.randrange(0, 5000) if name == "INBOX" else rng.randrange(0, 800)
            out.append(FolderData(name, messages, messages * rng.randrange(2_000, 60_000)))
        return out

    def sender_rate(self, sender: str) -> int:
        """Unique remote recipients per hour; 0 means the sender is absent from the payload."""
        if self.heavy_sender and sender == self.heavy_sender_address:
            return HEAVY_SENDER_RATE
        rate = self._rates.get(sender)
        if rate is None:
            rng = _rng(self.seed, "rate", sender)
            # Most senders reach a handful of people an hour, a few some dozens (median about 4,
            # one in a hundred above 40): a user's total rarely reaches the priority threshold.
            active = rng.random() >= 0.3
            rate = 1 + min(int(rng.lognormvariate(1.2, 1.0)), 400) if active else 0
            self._rates[sender] = rate
        return rate

    @cached_property
    def _rates(self) -> dict[str, int]:
        # Per-user totals ask for every sender of the server at each call: 50,000 at the
        # largest size, each otherwise a fresh hash and generator.
        return {}

    @property
    def heavy_sender_address(self) -> str | None:
        first = self.pops[self.user_names[0]]
        return first[0] if first else None

    def senders(self, user: str, window_seconds: float) -> dict[str, int]:
        """Unique recipients per sender of one user in a window (absent when zero)."""
        hours = window_seconds / 3600
        out = {}
        for sender in self.pops.get(user, ()):
            count = round(self.sender_rate(sender) * hours)
            if count > 0:
                out[sender] = count
        return out

    def outgoing_held(self, user: str) -> bool:
        """cPanel holds this user's outgoing mail (listaccts outgoing_mail_hold)."""
        return self.user_names.index(user) % 7 == 3

    def outgoing_suspended(self, user: str) -> bool:
        return self.user_names.index(user) % 7 == 4

    @property
    def heavy_user(self) -> str | None:
        address = self.heavy_sender_address
        return self.owner(address) if address else None

    def mail_flow(
        self, user: str, window_seconds: float, *, spamming: bool = False
    ) -> MailFlowData:
        """emailtrack_user_stats for a user: quiet users send a little and bounce less; the
        heavy sender's user (or a ``spamming`` one) sends a burst, bounces, and trips both of
        cPanel's per-hour limits."""
        hours = window_seconds / 3600
        if spamming or (self.heavy_sender and user == self.heavy_user):
            sent = round(2000 * hours)
            return MailFlowData(
                sent,
                round(1700 * hours),
                round(300 * hours),
                round(250 * hours),
                round(180 * hours),
                sent * 3_000,
                reached_max_emails=True,
                reached_max_defer_fail=True,
            )
        sent = round(sum(self.senders(user, window_seconds).values()) / 4)
        return MailFlowData(
            sent, sent + sent // 10, sent // 20, sent // 50, sent // 100, sent * 24_000
        )

    def disk(self, account: str) -> tuple[int, int]:
        """An address's disk use and quota in bytes (0: unlimited); one address of the second
        user is at 95% of its quota."""
        used = sum(f.vsize for f in self.mailbox(account))
        if len(self.user_names) > 1 and account == next(iter(self.pops[self.user_names[1]]), None):
            return used, used * 100 // 95
        rng = _rng(self.seed, "quota", account)
        quota = rng.choice((0, 0, 1 << 30, 5 << 30, 10 << 30))
        return used, max(quota, used * 2) if quota else 0

    def user_total(self, user: str, window_seconds: float) -> int:
        """The per-user figure; the simulator takes the sum of its senders' counts."""
        return sum(self.senders(user, window_seconds).values())
