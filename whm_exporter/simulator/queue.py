"""Exim's queue on the simulated server, as fetch_mail_queue lists it in real servers' forms
(cPanel's Whostmgr/Exim.pm, which parses ``exim -bpra``): a third of it the heavy sender's
backlog to gmail.com (deferred, as the big providers do with a spam run), bounces (sender "")
of which every third is frozen, a few frozen messages besides, and other mail deferred by the
usual providers; ``time`` is the arrival time the message id encodes, ``size`` whole KiB as
exim's display rounds it (14K is 14336) or exact bytes below 1K, ``recipients`` may list an
address already delivered, and ``user`` is null but for the messages cPanel holds.

The oldest message arrived exactly three days before the simulator started, and no message
arrived within ten minutes of an age bucket's edge (1h, 6h, 1d) then: a test may compute every
figure the exporter must report from :func:`messages` and the same clock, for ten minutes.
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from typing import Any

import orjson

from whm_exporter.simulator.dataset import Dataset, _rng

PROVIDER = "gmail.com"
OLDEST_AGE = 3 * 86400
# Ages (seconds before the start) messages arrive in: away from 1h, 6h and 1d by ten minutes.
_BANDS = ((300, 3000), (4200, 21000), (22200, 85800), (87000, OLDEST_AGE - 60))
_SPAM_BANDS = _BANDS[:2]
_DOMAINS = ("yahoo.com", "outlook.com", "hotmail.com", "example.org", "example.net", "aol.com")
_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


def _base62(value: int, width: int) -> str:
    digits = []
    for _ in range(width):
        value, digit = divmod(value, 62)
        digits.append(_BASE62[digit])
    return "".join(reversed(digits))


def message_id(arrival: int, n: int) -> str:
    """An Exim message id: the arrival time, a process id and a sub-second part, in base 62."""
    return f"{_base62(arrival, 6)}-{_base62(10_000 + n, 6)}-{_base62(n % 3844, 2)}"


def messages(ds: Dataset, started: int) -> Iterator[dict[str, Any]]:
    """The queue's messages, oldest first, for a simulator started at ``started`` (Unix)."""
    total = ds.queue_messages
    rng = _rng(ds.seed, "queue", total)
    spammer = ds.heavy_sender_address
    senders = [a for user in ds.user_names for a in ds.pops[user] if a != spammer]
    held = ds.owner(spammer) if spammer and ds.spam_action == "hold" else None
    ages: list[tuple[int, str]] = []
    for n in range(total):
        if n == 0:
            ages.append((OLDEST_AGE, "mail"))
            continue
        kind = "spam" if n % 3 == 1 and spammer else "bounce" if n % 20 == 2 else "mail"
        low, high = rng.choice(_SPAM_BANDS if kind == "spam" else _BANDS)
        ages.append((rng.randint(low, high), kind))
    ages.sort(key=lambda a: -a[0])
    for n, (age, kind) in enumerate(ages):
        arrival = started - age
        user = None
        if kind == "spam":
            sender = spammer or ""
            recipients = [f"r{rng.randrange(10**6)}@{PROVIDER}" for _ in range(rng.randint(1, 3))]
            # cPanel holds the address's mail after its spam check: Exim names its owner.
            user = held if n % 50 == 0 else None
            frozen = 0
        elif kind == "bounce":
            sender = ""
            recipients = [f"forged{rng.randrange(10**6)}@{rng.choice(_DOMAINS)}"]
            frozen = int(n % 3 == 0)
        else:
            sender = rng.choice(senders) if senders else "cpanel@server.example"
            domain = rng.choice(_DOMAINS)
            recipients = [f"c{rng.randrange(10**5)}@{domain}"]
            if n % 7 == 0:
                # Delivered already to a second address (a local one), still listed.
                recipients.append(rng.choice(senders) if senders else "root")
            frozen = int(n % 97 == 5)
        size = rng.randint(1, 60) * 1024 if n % 5 else rng.randint(300, 1000)
        yield {
            "frozen": frozen,
            "msgid": message_id(arrival, n),
            "recipients": recipients,
            "sender": sender,
            "size": size,
            "time": arrival,
            "user": user,
        }


def body(ds: Dataset, started: int) -> bytes:
    """The whole fetch_mail_queue answer, serialised once a message at a time (200,000 messages
    are about 34 MB; never a list of them all)."""
    parts = [b'{"data":{"records":[']
    for n, message in enumerate(messages(ds, started)):
        if n:
            parts.append(b",")
        parts.append(orjson.dumps(message))
    metadata = {"command": "fetch_mail_queue", "reason": "OK", "result": 1, "version": 1}
    parts.append(b']},"metadata":' + orjson.dumps(metadata) + b"}")
    return b"".join(parts)
