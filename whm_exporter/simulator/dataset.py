"""The simulator's generated server: users, email accounts, folders and senders.

Everything is a pure function of the seed, the sizes, the scenarios switched on and the time
since the simulator started (``uptime``, for what changes: a sender's jump, a mailbox filling
up), computed on demand, so a server of 10,000 accounts costs nothing to hold and a test can ask
what any answer must contain.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import cached_property

from whm_exporter.whm.parse import Folder, MailFlow

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
# The user cPanel runs scripts as outside suEXEC (mod_php and other DSO handlers): absent from
# listaccts, named by eximstats for the mail those scripts send.
SYSTEM_USER = "nobody"
HOSTNAME = "server.example"
# The suspended user's first address keeps sending: above the exporter's default priority
# threshold (100), under cPanel's 500.
SUSPENDED_SENDER_RATE = 150
# The jumper's usual unique recipients per hour, and after its jump (under cPanel's 500, and
# under the demo's lowered threshold of 250: far above its usual level, not spam).
JUMPER_RATES = (20, 200)
# The between sender's unique recipients per hour: over a threshold lowered to 250, under
# cPanel's default 500 (the rules must read each server's own). 300, as the test
# (a sender at 300 flagged, the jumper at 200 not).
BETWEEN_RATE = 300
# The forms listaccts gives an account's max_email_per_hour and max_defer_fail_percentage
# (cPanel's Whostmgr/Accounts/List.pm), dealt to the users in turn: its own cap (a JSON number,
# or a string), "unlimited", or the server's setting (0, "0", "default", "", "*unknown*", no key).
OWN, OWN_TEXT, ABSENT = "<own>", "<own text>", "<absent>"
CAP_FORMS: tuple[object, ...] = (
    OWN,
    "unlimited",
    "0",
    "default",
    "",
    "*unknown*",
    ABSENT,
    OWN_TEXT,
    0,
)
# The own caps (messages per hour, deferred and failed percentage) of each own form: the heavy
# sender's user (the first) is past both.
OWN_CAPS = {OWN: (1500, 20), OWN_TEXT: (300, 40)}
# email_outbound_spam_detect_action's values.
SPAM_ACTIONS = ("noaction", "hold", "block")
# The filling address reaches its quota this long after the simulator starts, arriving mail
# of this size on average.
FILL_SECONDS = 2 * 86400
FILLING_MESSAGE_BYTES = 40_000
_MIB = 1 << 20
# The brute-forced address's failed logins cPHulk holds, by service (WhmUserLoginFailures fires
# at 20 over all services), and the addresses they come from (documentation ranges, RFC 5737).
BRUTE_FAILURES = {"imap": 30, "smtp": 6}
BRUTE_SOURCES = ("203.0.113.7", "198.51.100.44")
# A mistyped password now and then: (user index, service) of the failures every server has.
# cpaneld logins name the cPanel user, the mail services an address.
TYPOS = ((0, "pop3"), (2, "smtp"), (3, "cpaneld"), (4, "imap"))
# The mail DNS records cPanel finds not valid: (user index, record, state). The heavy sender's
# user sends mail with an SPF record that does not name the server (WhmDomainMailAuthInvalid).
DNS_PROBLEMS = ((0, "spf", "INVALID"), (2, "dkim", "MISSING"), (1, "ptr", "HELO_MISMATCH"))


def _rng(*parts: object) -> random.Random:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


@dataclass(frozen=True)
class Dataset:
    """A deterministic WHM server. ``accounts`` email addresses spread over ``users`` cPanel users;
    every 10th user is suspended; the first address of the first user is a heavy sender.

    Scenarios for the spam and quota alerts, all off by default (each names its user or
    address in a property of the same stem, None when the server is too small for it):
    ``nobody_sends``, the system user ``nobody`` sends mail (in the per-user totals and the mail
    flow, not in listaccts); ``suspended_sends``, a suspended user (the tenth, or the last of a
    smaller server) sends notably; ``jump_after``, seconds after the start when the jumper
    (the first address of the third user) goes from its usual 20 unique recipients an hour to
    200; ``filling_mailbox``, the first address of the fourth user fills its quota in two days;
    ``between_sender``, the first address of the fifth user reaches 300 unique recipients an
    hour (between a lowered threshold and cPanel's default 500).

    ``queue_messages``: Exim's queue, a third of it the heavy sender's backlog to gmail.com,
    with bounces and frozen messages (simulator/queue.py).
    ``dns_all_valid`` off (the default, as the heavy sender): cPanel finds some mail DNS
    records not valid (``mail_auth``): the heavy sender's user's domain has an SPF record
    that does not name the server (``INVALID``), the third user's no DKIM record
    (``MISSING``), and the second user's PTR does not name the server's HELO
    (``HELO_MISMATCH``).

    ``brute_force`` (on by default, as the heavy sender): someone guesses the password of the
    first address of the second user (``brute_forced_address``) over IMAP and SMTP, and cPHulk
    blocks it, the addresses the guesses come from and one of them for a day. ``cphulk``:
    cPHulk is on (a few mistyped passwords are all it holds without ``brute_force``).

    The server's Tweak Settings are fields too, and each user has its own caps in one of the
    forms listaccts sends (``CAP_FORMS``, in turn): REACHED_MAXEMAILS and REACHED_MAXDEFERFAIL
    carry cPanel's marker text when the user's hourly mail passes the cap in force.
    """

    seed: int = 1
    accounts: int = 20
    users: int = 5
    folders: int = 5
    heavy_sender: bool = True
    nobody_sends: bool = False
    suspended_sends: bool = False
    jump_after: float | None = None
    filling_mailbox: bool = False
    between_sender: bool = False
    # On by default, as the heavy sender is: a server without either shows little.
    brute_force: bool = True
    cphulk: bool = True
    dns_all_valid: bool = False
    # The server's Tweak Settings (get_tweaksetting), as a new server has them; None: unset.
    spam_detection: bool = True
    spam_threshold: int = 500
    spam_action: str = "noaction"
    max_emails_per_hour: int | None = None
    max_defer_fail_percentage: int | None = None
    min_defer_fail: int = 5
    # Messages in Exim's queue (simulator/queue.py): a third the heavy sender's backlog.
    queue_messages: int = 30

    @cached_property
    def user_names(self) -> tuple[str, ...]:
        return tuple(f"{_WORDS[i % len(_WORDS)]}{i + 1:03d}" for i in range(max(1, self.users)))

    @property
    def nobody_user(self) -> str | None:
        return SYSTEM_USER if self.nobody_sends else None

    @property
    def mail_users(self) -> tuple[str, ...]:
        """Every user eximstats names: the cPanel users and, sending, the system user."""
        return self.user_names + ((SYSTEM_USER,) if self.nobody_sends else ())

    def domain(self, user: str) -> str:
        return HOSTNAME if user == SYSTEM_USER else f"{user}.example"

    def suspended(self, user: str) -> bool:
        return self.user_names.index(user) % 10 == 9 or user == self.suspended_sender_user

    def _nth_user(self, index: int) -> str | None:
        # Scenario users come after the heavy sender's and the near-quota address's users (the
        # first two), each its own.
        return self.user_names[index] if index < len(self.user_names) else None

    def _first_address(self, user: str | None) -> str | None:
        addresses = self.pops[user] if user is not None else ()
        return addresses[0] if addresses else None

    @property
    def suspended_sender_user(self) -> str | None:
        if not self.suspended_sends or len(self.user_names) < 5:
            return None
        return self.user_names[min(9, len(self.user_names) - 1)]

    @property
    def suspended_sender_address(self) -> str | None:
        return self._first_address(self.suspended_sender_user)

    @property
    def jumper_address(self) -> str | None:
        return self._first_address(self._nth_user(2)) if self.jump_after is not None else None

    @property
    def jumper_user(self) -> str | None:
        address = self.jumper_address
        return self.owner(address) if address else None

    @property
    def filling_address(self) -> str | None:
        return self._first_address(self._nth_user(3)) if self.filling_mailbox else None

    @property
    def between_address(self) -> str | None:
        return self._first_address(self._nth_user(4)) if self.between_sender else None

    @property
    def brute_forced_address(self) -> str | None:
        if not self.brute_force:
            return None
        return self._first_address(self.user_names[min(1, len(self.user_names) - 1)])

    def login_failures(self) -> list[tuple[str, str, str]]:
        """The failed logins cPHulk holds, one per failure: (user as logged in, service,
        address it came from); none while cPHulk is off."""
        if not self.cphulk:
            return []
        out = []
        for index, service in TYPOS:
            if index < len(self.user_names):
                user = self.user_names[index]
                login = user if service == "cpaneld" else self._first_address(user) or user
                out.append((login, service, f"192.0.2.{10 + index}"))
        brute = self.brute_forced_address
        if brute is not None:
            for service, count in BRUTE_FAILURES.items():
                out += [(brute, service, BRUTE_SOURCES[n % 2]) for n in range(count)]
        return out

    def login_blocks(self) -> tuple[list[tuple[str, str]], list[str], list[str]]:
        """What cPHulk blocks: users (with the address of the last guess), addresses, and
        addresses blocked for a day (past its excessive-failures limit)."""
        brute = self.brute_forced_address
        if not self.cphulk or brute is None:
            return [], [], []
        return [(brute, BRUTE_SOURCES[0])], list(BRUTE_SOURCES), [BRUTE_SOURCES[0]]

    @cached_property
    def hosted_domains(self) -> frozenset[str]:
        """The domains the server has (one per user): those validate_current_* checks."""
        return frozenset(self.domain(u) for u in self.user_names)

    def mail_auth(self, domain: str) -> dict[str, str]:
        """The state cPanel gives each record of a hosted domain: spf, dkim, ptr."""
        states = {"spf": "VALID", "dkim": "VALID", "ptr": "VALID"}
        if not self.dns_all_valid:
            for index, record, state in DNS_PROBLEMS:
                if index < len(self.user_names) and domain == self.domain(self.user_names[index]):
                    states[record] = state
        return states

    def tweak_settings(self) -> dict[str, str | None]:
        """The server's Tweak Settings as get_tweaksetting gives them: strings, None unset."""

        def text(value: int | None) -> str | None:
            return None if value is None else str(value)

        return {
            "email_outbound_spam_detect_enable": str(int(self.spam_detection)),
            "email_outbound_spam_detect_threshold": str(self.spam_threshold),
            "email_outbound_spam_detect_action": self.spam_action,
            "maxemailsperhour": text(self.max_emails_per_hour),
            "email_send_limits_max_defer_fail_percentage": text(self.max_defer_fail_percentage),
            "email_send_limits_min_defer_fail_to_trigger_protection": str(self.min_defer_fail),
        }

    def cap_form(self, user: str) -> object:
        """The form of the user's caps in listaccts (``CAP_FORMS``); the system user has none."""
        if user not in self.user_names:
            return ABSENT
        return CAP_FORMS[self.user_names.index(user) % len(CAP_FORMS)]

    def listed_caps(self, user: str) -> dict[str, object]:
        """max_email_per_hour and max_defer_fail_percentage as listaccts sends them."""
        form = self.cap_form(user)
        if form is ABSENT:
            return {}
        if form in OWN_CAPS:
            emails, percentage = OWN_CAPS[str(form)]
            if form is OWN_TEXT:
                return {
                    "max_email_per_hour": str(emails),
                    "max_defer_fail_percentage": str(percentage),
                }
            return {"max_email_per_hour": emails, "max_defer_fail_percentage": percentage}
        return {"max_email_per_hour": form, "max_defer_fail_percentage": form}

    def caps(self, user: str) -> tuple[int | None, int | None]:
        """The hourly cap and the deferred and failed percentage cPanel enforces on the user
        (None: none): its own, none when "unlimited", else the server's (0 or unset: none)."""
        form = self.cap_form(user)
        if form in OWN_CAPS:
            return OWN_CAPS[str(form)]
        if form == "unlimited":
            return None, None
        return self.max_emails_per_hour or None, self.max_defer_fail_percentage or None

    @cached_property
    def _nobody_rates(self) -> dict[str, int]:
        """The envelope senders Exim records for scripts run as nobody, with their rates
        (together above the priority threshold, 100: the system user is hot). A script that
        names no sender sends as nobody qualified with the server's hostname (Exim's
        qualify_domain, by default primary_hostname); a web form (WordPress, say) sets its
        site's address with -f."""
        if not self.nobody_sends:
            return {}
        return {f"{SYSTEM_USER}@{HOSTNAME}": 90, f"wordpress@{self.domain(self.user_names[0])}": 30}

    @property
    def nobody_senders(self) -> tuple[str, ...]:
        return tuple(self._nobody_rates)

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

    def mailbox(self, account: str, uptime: float = 0.0) -> list[Folder]:
        """The folders of an address or of a user's main mailbox, ``uptime`` seconds after the
        simulator started (only the filling address changes: mail arrives in its INBOX)."""
        out = self._mailbox_at_start(account)
        if account != self.filling_address:
            return out
        grown = self._grown(account, uptime)
        inbox = out[0]  # folder_names() starts with it
        messages = inbox.messages + grown // FILLING_MESSAGE_BYTES
        return [Folder(inbox.name, messages, inbox.vsize + grown), *out[1:]]

    def _mailbox_at_start(self, account: str) -> list[Folder]:
        out = []
        for name in self.folder_names():
            rng = _rng(self.seed, account, name)
            messages = rng.randrange(0, 5000) if name == "INBOX" else rng.randrange(0, 800)
            out.append(Folder(name, messages, messages * rng.randrange(2_000, 60_000)))
        return out

    def _filling_quota(self, account: str) -> tuple[int, int]:
        """The filling address's use at the start and its quota: twice that (at least 100 MiB),
        in whole MiB as cPanel sets quotas."""
        used = sum(f.vsize for f in self._mailbox_at_start(account))
        return used, -(-max(2 * used, 100 * _MIB) // _MIB) * _MIB

    def _grown(self, account: str, uptime: float) -> int:
        """Bytes the filling address has received: steadily, until its quota is full."""
        used, quota = self._filling_quota(account)
        return min(quota - used, int((quota - used) * max(0.0, uptime) / FILL_SECONDS))

    @cached_property
    def _fixed_rates(self) -> dict[str, int]:
        """Senders whose rate a scenario sets rather than the seed."""
        rates = dict(self._nobody_rates)
        if self.between_address:
            rates[self.between_address] = BETWEEN_RATE
        if self.suspended_sender_address:
            rates[self.suspended_sender_address] = SUSPENDED_SENDER_RATE
        if self.heavy_sender and self.heavy_sender_address:
            rates[self.heavy_sender_address] = HEAVY_SENDER_RATE
        return rates

    def sender_rate(self, sender: str, uptime: float = 0.0) -> int:
        """Unique remote recipients per hour ``uptime`` seconds after the start; 0 means the
        sender is absent from the payload."""
        if sender == self.jumper_address:
            assert self.jump_after is not None
            return JUMPER_RATES[uptime >= self.jump_after]
        fixed = self._fixed_rates.get(sender)
        if fixed is not None:
            return fixed
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

    def senders(self, user: str, window_seconds: float, uptime: float = 0.0) -> dict[str, int]:
        """Unique recipients per sender of one user in a window (absent when zero)."""
        hours = window_seconds / 3600
        out = {}
        addresses = self.nobody_senders if user == SYSTEM_USER else self.pops.get(user, ())
        for sender in addresses:
            count = round(self.sender_rate(sender, uptime) * hours)
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
        self, user: str, window_seconds: float, *, spamming: bool = False, uptime: float = 0.0
    ) -> MailFlow:
        """emailtrack_user_stats for a user: quiet users send a little and bounce less; the
        heavy sender's user (or a ``spamming`` one) sends a burst and bounces (and, past its
        caps, trips cPanel's per-hour limits). Any other user's mail follows its senders (the
        jumper's user sends more after the jump but trips no limit)."""
        counts = self._counts(user, window_seconds, spamming, uptime)
        (emails, emails_at), (defer_fail, defer_fail_at) = self.limits(
            user, spamming=spamming, uptime=uptime
        )
        return MailFlow(user, *counts, emails, defer_fail, emails_at, defer_fail_at)

    def _counts(
        self, user: str, window_seconds: float, spamming: bool, uptime: float
    ) -> tuple[int, int, int, int, int, int]:
        """Sent, delivered, deferrals, failures, defer-failures and bytes in the window."""
        hours = window_seconds / 3600
        if spamming or (self.heavy_sender and user == self.heavy_user):
            sent = round(2000 * hours)
            return (
                sent,
                round(1700 * hours),
                round(300 * hours),
                round(250 * hours),
                round(180 * hours),
                sent * 3_000,
            )
        sent = round(self.user_total(user, window_seconds, uptime) / 4)
        return sent, sent + sent // 10, sent // 20, sent // 50, sent // 100, sent * 24_000

    def limits(
        self, user: str, *, spamming: bool = False, uptime: float = 0.0
    ) -> tuple[tuple[bool, tuple[int, int] | None], tuple[bool, tuple[int, int] | None]]:
        """Whether the user's mail this clock hour passed each of its caps, with cPanel's marker
        numbers: messages sent against the hourly cap, and deferrals plus failures against the
        minimum that lets their share (at or above the percentage in force) trigger. Senders
        keep steady rates here, so the clock hour's counts are an hour's, whatever the time."""
        sent, _, deferrals, failures, _, _ = self._counts(user, 3600, spamming, uptime)
        cap, percentage = self.caps(user)
        emails = cap is not None and sent >= cap
        bounced = deferrals + failures
        defer_fail = (
            percentage is not None
            and bounced >= self.min_defer_fail
            and sent > 0
            and 100 * bounced >= percentage * sent
        )
        return (
            (emails, (sent, cap) if emails and cap is not None else None),
            (defer_fail, (bounced, self.min_defer_fail) if defer_fail else None),
        )

    def marker_texts(
        self, user: str, *, spamming: bool = False, uptime: float = 0.0
    ) -> tuple[int | str, int | str]:
        """REACHED_MAXEMAILS and REACHED_MAXDEFERFAIL as a real server sends them: 0, or the
        text of cPanel's marker file ("150/150", "7/5 (58%)")."""
        (_, emails), (_, defer_fail) = self.limits(user, spamming=spamming, uptime=uptime)
        first: int | str = 0 if emails is None else f"{emails[0]}/{emails[1]}"
        if defer_fail is None:
            return first, 0
        sent = self._counts(user, 3600, spamming, uptime)[0]
        share = round(100 * defer_fail[0] / sent)
        return first, f"{defer_fail[0]}/{defer_fail[1]} ({share}%)"

    def disk(self, account: str, uptime: float = 0.0) -> tuple[int, int]:
        """An address's disk use (its folders' sizes) and quota in bytes (0: unlimited); one
        address of the second user is at 95% of its quota, the filling address fills its own."""
        used = sum(f.vsize for f in self.mailbox(account, uptime))
        if account == self.filling_address:
            return used, self._filling_quota(account)[1]
        if len(self.user_names) > 1 and account == next(iter(self.pops[self.user_names[1]]), None):
            return used, used * 100 // 95
        rng = _rng(self.seed, "quota", account)
        quota = rng.choice((0, 0, 1 << 30, 5 << 30, 10 << 30))
        return used, max(quota, used * 2) if quota else 0

    def user_total(self, user: str, window_seconds: float, uptime: float = 0.0) -> int:
        """The per-user figure; the simulator takes the sum of its senders' counts."""
        return sum(self.senders(user, window_seconds, uptime).values())


# The --demo server: every scenario on, so each dashboard panel and alert has something to show
# (the jump a few minutes in, once Prometheus has some history of the sender's usual level).
# Its server has lowered cPanel's spam threshold to 250 with the action hold (the between sender
# is over it, under the default 500), caps each domain at 200 messages an hour and blocks at 50%
# deferred and failed; the heavy sender's user is past its own caps, with markers. An address
# is brute-forced (cPHulk holds 36 failures of it, over the rules' 20).
DEMO = Dataset(
    accounts=24,
    users=6,
    folders=6,
    nobody_sends=True,
    suspended_sends=True,
    jump_after=300.0,
    filling_mailbox=True,
    between_sender=True,
    spam_threshold=250,
    spam_action="hold",
    max_emails_per_hour=200,
    max_defer_fail_percentage=50,
    # Over the rules' 1000, with 500 of the heavy sender's to gmail.com (over their 100 and
    # 200), the other providers' backlogs under 200 each.
    queue_messages=1500,
)
