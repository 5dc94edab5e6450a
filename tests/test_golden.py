"""Characterization (golden) tests: what a user sees of today's code, pinned byte for byte before
the inside is reshaped (issue 24, "one place per signal"). A change these catch is a change a
user can see, whatever the refactor meant.

One state, built through the state's own API at fixed times (statekit's helpers), holds every
signal family: discovery by list_pops_with_disk with disk figures and a suspended user, two
windows of per-user totals, senders and mail flow, mailboxes (one failed, one past max_age, one
call in flight), and an outsider (``nobody``) the server-wide answers name. Pinned:

- the kept-state document :func:`persist.dump` writes of it: ``fixtures/kept-state-v2.json``,
  and the file --storage.path holds of it, ``fixtures/kept-state-v2.state``. That file stands
  for one today's release wrote: it must restore into a state that serves what the original
  does;
- the /probe answer (text format 0.0.4) of that state: ``fixtures/kept-state-v2.probe.txt``;
- the state identity digest (a literal below): another digest restarts every target cold;
- the kept-state Document's JSON schema: ``fixtures/kept-state-v2.schema.json``.

Format 2 (issue 25) adds each account's caps, the limit markers' numbers and the server settings
to the state (and a section to the identity); before its release, issue 26 adds cPHulk's
answers, Exim's queue and the mail DNS checks (and the logins, mail_queue and dns_auth
sections). The format-1 files, written by whm-exporter at commit d62a864
(``kept-state-v1.*``), stay as the witness of the release before: such a file is a logged cold
start, neither restored nor set aside as damaged.

Regenerate the fixture files after a change meant to be visible with
``WHM_GOLDEN_UPDATE=1 .venv/bin/python -m pytest tests/test_golden.py`` and review the diff. The
kept-state file is also the old-release witness: if dump's bytes change on purpose, that is a
format change (storage.VERSION), and the file of the old format must stay, loaded by its own
test. The identity digests are literals, changed by hand (the failure prints the new one).
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, loaded
from prometheus_client import Counter
from statekit import answer, fail, state_for

from whm_exporter import storage
from whm_exporter.collect import persist
from whm_exporter.collect.state import Addresses, Kept, Kind, TargetState
from whm_exporter.config import state_identity
from whm_exporter.exposition import render_text
from whm_exporter.families.dns_auth import Checked
from whm_exporter.families.logins import top_users
from whm_exporter.families.mail_queue import Queue, QueuedDomain, QueuedSender
from whm_exporter.metrics import families
from whm_exporter.probe import snapshot
from whm_exporter.snapshot import CallRecord, MailboxSample, SenderSample
from whm_exporter.whm.parse import Account, LoginFailure, Mailbox, MailFlow, TweakSetting

UPDATE = os.environ.get("WHM_GOLDEN_UPDATE") == "1"
KEPT = FIXTURES / "kept-state-v2.json"
# The same document as --storage.path holds it (storage's header, then zlib).
KEPT_FILE = FIXTURES / "kept-state-v2.state"
PROBE = FIXTURES / "kept-state-v2.probe.txt"
SCHEMA = FIXTURES / "kept-state-v2.schema.json"
# The release before format 2: its document and the file it wrote of it.
KEPT_V1 = FIXTURES / "kept-state-v1.json"
KEPT_FILE_V1 = FIXTURES / "kept-state-v1.state"

SERVER = ("https", "whm1.example.com", 2087)
EXPLICIT: dict[str, tuple[str, ...]] = {"dave": ("sales@dave.example",)}
MODULE: dict[str, Any] = {
    "discovery": {"function": "list_pops_with_disk"},
    "mailboxes": {"max_age": "100s"},
    "unique_recipients": {"windows": ["1h", "1d"]},
    "mail_flow": {"enabled": True, "windows": ["1h", "1d"], "defer_fail_threshold": 10},
    "server_settings": {"enabled": True},
    "logins": {"enabled": True, "max_users": 2},
    "mail_queue": {"enabled": True, "max_senders": 1, "age_buckets": ["1h", "1d"]},
    "dns_auth": {"enabled": True},
}
# Monotonic times in the state; the document holds wall-clock ones (wall = monotonic + OFFSET).
OFFSET = 1_700_000_000.0
NOW = 104.0


def _state() -> TargetState:
    state = state_for(EXPLICIT, **MODULE)
    state.new_epoch(0.0)
    # The spam signal first, before any user is listed: nobody is an outsider, alice is hot.
    answer(state, state.totals["1h"], {"alice": 120, "bob": 3, "nobody": 800}, 1.0)
    answer(state, state.totals["1d"], {"alice": 400, "bob": 9, "carol": 1}, 1.0)
    # Limit markers: alice's cap reached (its numbers from cPanel's marker text), nobody's
    # defer-fail share.
    flow = {
        "alice": MailFlow("alice", 130, 120, 4, 2, 1, 65_536, True, False, (150, 150), None),
        "bob": MailFlow("bob", 3, 3, 0, 0, 0, 2048, False, False),
        "nobody": MailFlow("nobody", 900, 10, 300, 500, 40, 1_048_576, False, True, None, (800, 5)),
    }
    answer(state, state.mail_flow["1h"], flow, 1.5)
    day = {"carol": MailFlow("carol", 1, 1, 0, 0, 0, 512, False, False)}
    answer(state, state.mail_flow["1d"], {**flow, **day}, 1.5)
    assert state.listaccts is not None
    # Caps: alice's own, bob's "unlimited", carol's the server's.
    accounts = {
        "alice": Account("alice", False, True, False, 150, 40, 5),
        "bob": Account("bob", False, outgoing_suspended=True, max_emails_per_hour="unlimited"),
        "carol": Account("carol", False, min_defer_fail=5),
        "eve": Account("eve", True),
    }
    answer(state, state.listaccts, accounts, 2.0)
    # The server settings: read (maxemailsperhour unset: unlimited), and one refused.
    for key, text in (
        ("email_outbound_spam_detect_enable", "1"),
        ("email_outbound_spam_detect_threshold", "250"),
        ("email_outbound_spam_detect_action", "hold"),
        ("maxemailsperhour", None),
        ("email_send_limits_max_defer_fail_percentage", "50"),
    ):
        answer(state, state.settings[key], TweakSetting(key, text), 4.0)
    fail(state, state.settings["email_send_limits_min_defer_fail_to_trigger_protection"], 4.0)
    # cPHulk on, its failed logins (one user left out by max_users), two lists of blocks, and
    # the excessive brutes refused.
    answer(state, state.logins[Kind.CPHULK], True, 4.5)
    rows = [("info@a.example", "imap")] * 3 + [("info@a.example", "smtp"), ("bob", "cpaneld")]
    rows += [("admin", "pop3")]
    failed = top_users(tuple(LoginFailure(u, s) for u, s in rows), 2)
    answer(state, state.logins[Kind.LOGIN_FAILURES], failed, 4.5)
    answer(state, state.logins[Kind.USER_BLOCKS], 1, 4.5)
    answer(state, state.logins[Kind.IP_BLOCKS], 2, 4.5)
    fail(state, state.logins[Kind.EXCESSIVE_BLOCKS], 4.5)
    # Exim's queue: alice's backlog to gmail.com (one sender left out by max_senders).
    assert state.queue is not None
    queue = Queue(
        40,
        2,
        3,
        573_440,
        int(OFFSET - 3 * 86400),
        {"1h": 30, "1d": 1},
        Kept((QueuedSender("info@alice.example", "alice", 30),), 1),
        Kept((QueuedDomain("gmail.com", 30), QueuedDomain("yahoo.com", 5)), 3),
    )
    answer(state, state.queue, queue, 5.0)
    # The main mailboxes are known from listaccts: one answered early, past max_age at NOW.
    answer(
        state,
        state.mailboxes[("carol", "carol")],
        Kept((MailboxSample("carol", "carol", "INBOX", 1, 10),)),
        3.0,
    )
    disk = {
        "alice": (
            Mailbox("alice", True, 1000, None),
            Mailbox("a1@x", False, 2048, 10_485_760),
            Mailbox("a2@x", False, 0, None),
        ),
        "bob": (Mailbox("bob", True, 0, 52_428_800), Mailbox("b1@x", False, 4096, None)),
        "carol": (Mailbox("carol", True, 12, None),),
    }
    for user, mailboxes in disk.items():
        addresses = tuple(sorted(m.address for m in mailboxes if not m.main))
        answer(state, state.pops[user], Addresses(addresses, mailboxes), 5.0)
    # The mail DNS of the addresses' domains (x: alice's, dave.example: dave's): an SPF record
    # not valid, a DKIM record missing beside a domain WHM refused alone, the PTRs refused.
    spf = Checked({"dave.example": "INVALID", "x": "VALID"}, {})
    answer(state, state.dns_auth[Kind.SPF], spf, 6.0)
    refused = "API failure: (XID 1a2b3c) The user “root” does not control a domain named “x”."
    dkim = Checked({"dave.example": "MISSING"}, {"x": refused})
    answer(state, state.dns_auth[Kind.DKIM], dkim, 6.0)
    fail(state, state.dns_auth[Kind.PTR], 6.0)
    for t, ((user, account), item) in enumerate(sorted(state.mailboxes.items())):
        if (user, account) == ("carol", "carol"):
            continue
        if (user, account) == ("bob", "b1@x"):
            fail(state, item, 10.0)
            continue
        folders = (
            MailboxSample(user, account, "INBOX", 3 + t, 4096 * (t + 1)),
            MailboxSample(user, account, "Sent", t, 512),
        )
        answer(state, item, Kept(folders, dropped=t % 2), 10.0 + t)
    answer(
        state,
        state.senders[("alice", "1h")],
        Kept((SenderSample("alice", "a1@x", "1h", 120),)),
        20.0,
    )
    alice_day = (
        SenderSample("alice", "a1@x", "1d", 300),
        SenderSample("alice", "a2@x", "1d", 100),
    )
    answer(state, state.senders[("alice", "1d")], Kept(alice_day, dropped=2), 20.5)
    answer(
        state,
        state.senders[("nobody", "1h")],
        Kept((SenderSample("nobody", "nobody@host.example", "1h", 800),)),
        21.0,
    )
    fail(state, state.senders[("bob", "1d")], 22.0)
    # A scrape between the answers: those after it are fresh at NOW, those before it kept.
    snapshot(state, 15.0, 0.1, 10.0, pending=False)
    # Kept as it was before the call, as if abandoned.
    state.start(state.mailboxes[("alice", "a1@x")], 30.0, urgent=False)
    return state


def _identity(state: TargetState) -> str:
    return state_identity(SERVER, state.module, state.explicit)


def _golden(path: Path, got: bytes) -> None:
    if UPDATE:
        path.write_bytes(got)
        # Not a pass: what was rewritten is for a person to review.
        pytest.skip(f"{path.name} rewritten: review its diff")
    assert got == path.read_bytes(), f"{path.name} differs (WHM_GOLDEN_UPDATE=1 rewrites it)"


def test_the_kept_state_document_is_byte_for_byte_todays() -> None:
    state = _state()
    taken = persist.capture(state, _identity(state), OFFSET)
    _golden(KEPT, persist.dump(taken, "t", OFFSET + 40.0))


def test_a_kept_state_file_of_todays_release_unpacks_to_the_document() -> None:
    if UPDATE:
        KEPT_FILE.write_bytes(storage.pack(KEPT.read_bytes()))
    # Compared unpacked: zlib may compress the same bytes otherwise on another machine.
    assert storage.unpack(KEPT_FILE.read_bytes()) == KEPT.read_bytes()


def test_the_format_1_witness_holds_the_document_of_its_release() -> None:
    data = KEPT_FILE_V1.read_bytes()
    assert data[:10] == storage._HEADER.pack(storage.MAGIC, 1)
    assert zlib.decompress(data[10:]) == KEPT_V1.read_bytes()


def test_a_kept_state_file_of_format_1_is_a_logged_cold_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = _state()
    path = tmp_path / storage.file_name("t")
    path.write_bytes(KEPT_FILE_V1.read_bytes())
    keeper = storage.Keeper.open(tmp_path, Counter("w", "w", ["result"], registry=None))
    with caplog.at_level(logging.INFO, "whm_exporter.storage"):
        back = keeper.load("t", _identity(state), state.module, state.explicit)
    assert back is None
    [line] = caplog.records
    assert line.levelno == logging.INFO
    assert "earlier release" in line.getMessage()
    assert (line.__dict__["target"], line.__dict__["version"]) == ("t", 1)
    assert line.__dict__["reads_version"] == storage.VERSION == 2
    # Not damaged: left where it is for the next write to replace, nothing set aside.
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_kept_state_of_todays_release_restores_to_what_it_served() -> None:
    state = _state()
    document = persist.parse(storage.unpack(KEPT_FILE.read_bytes()))
    assert document.identity == _identity(state)
    back = persist.restore(document, state.module, state.explicit, NOW, NOW + OFFSET)
    # When the previous scrape was served is the process's own, not kept.
    back.last_served = state.last_served
    before = snapshot(state, NOW, 0.25, 9.5, pending=False, look=True)
    after = snapshot(back, NOW, 0.25, 9.5, pending=False, look=True)
    # Live, the outsider's breakdown was made before the listing made the others; restored, the
    # listing replays first: the same series in another order, which Prometheus does not see.
    assert sorted(after.senders, key=repr) == sorted(before.senders, key=repr)
    # (How many answers expired since last asked only feeds a log line, and a restore keeps
    # no call's outcome.)
    without: dict[str, Any] = {"senders": []}
    assert replace(after, parts={**after.parts, **without}, expired=0) == replace(
        before, parts={**before.parts, **without}, expired=0
    )
    # Every family served: a snapshot without some of them proves little.
    assert all([after.mailboxes, after.senders, after.user_totals, after.mail_flow])
    assert all([after.limits, after.user_flags, after.disk, after.dropped])
    assert after.server_settings.values
    assert after.server_settings.users
    assert after.logins.failures.users.records
    assert after.logins.blocks
    assert after.mail_queue.senders.records
    assert after.dns_auth.checks
    assert after.dns_auth.left_out


def test_the_probe_answer_is_byte_for_byte_todays() -> None:
    state = _state()
    state.record(CallRecord("listaccts", "", 0.25, "success"), answered=True)
    state.record(CallRecord("get_mailbox_status_list", "b1@x", 0.5, "timeout"), answered=False)
    state.abandon("list_pops_with_disk")
    _golden(PROBE, render_text(families(snapshot(state, NOW, 0.25, 9.5, pending=False))))


def test_the_state_identity_digest_is_todays() -> None:
    # Another digest for the same configuration restarts every user's targets cold. (Changed
    # with format 2, issue 25: the server_settings section is part of the identity; and with
    # issue 26's logins, mail_queue and dns_auth sections, format 2 being unreleased.)
    assert _identity(_state()) == "34366161475f515edd28129ac94e04cf0f0293e018025ec915c5f3f5aaf1c762"
    plain = loaded({"modules": {"default": {"token": "x"}}}).config.modules["default"]
    assert (
        state_identity(SERVER, plain, {})
        == "02bc576b1ab7b8c1a4962ae79ce9746456b6ef14c76b090d9f923d64f7c4e9b7"
    )


def _without_const_types(schema: Any) -> Any:
    """The schema less the ``type`` pydantic writes beside a ``const`` since 2.7 or so (2.6,
    the floor pyproject.toml allows, leaves it out): the same constraint either way."""
    if isinstance(schema, dict):
        return {
            k: _without_const_types(v)
            for k, v in schema.items()
            if not (k == "type" and "const" in schema)
        }
    if isinstance(schema, list):
        return [_without_const_types(v) for v in schema]
    return schema


def test_the_kept_state_schema_is_todays() -> None:
    schema = _without_const_types(persist.Document.model_json_schema())
    _golden(SCHEMA, (json.dumps(schema, indent=2) + "\n").encode())
