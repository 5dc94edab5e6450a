"""The family registry: every kind owned once, in the orders the schedule, the kept state and
the probe's output have always had; records written from their own fields."""

from __future__ import annotations

import dataclasses

from whm_exporter import families
from whm_exporter.collect.state import DNS_KINDS, LOGIN_KINDS, Kind
from whm_exporter.families import mailboxes, senders
from whm_exporter.families.base import Fields
from whm_exporter.snapshot import MailboxSample
from whm_exporter.whm.parse import MailFlow


def test_the_registry_keeps_todays_orders() -> None:
    assert list(families.BY_KIND) == list(Kind)
    # The server settings (issue 25) right after the inventory, their rank's first family, and
    # cPHulk's calls and Exim's queue (issue 26) after them; the mail DNS (issue 26) after
    # everything else.
    assert (
        Kind.LISTACCTS,
        Kind.POPS,
        Kind.SETTING,
        *LOGIN_KINDS,
        Kind.MAIL_QUEUE,
        Kind.MAILBOX,
        Kind.SENDERS,
        *DNS_KINDS,
    ) == families.FIRST_TIME
    assert [f.kinds[0] for f in families.EXPOSED] == [
        Kind.MAILBOX,
        Kind.SENDERS,
        Kind.TOTALS,
        Kind.MAIL_FLOW,
        Kind.LISTACCTS,
        Kind.SETTING,
        Kind.CPHULK,
        Kind.MAIL_QUEUE,
        Kind.SPF,
    ]


def test_a_record_is_written_from_its_fields_less_its_key() -> None:
    flow = MailFlow("bob", 1, 2, 3, 4, 5, 6, True, False)
    rows = Fields(MailFlow)
    assert rows.out(flow) == dataclasses.astuple(flow)
    assert rows.into(list(rows.out(flow))) == flow
    sample = MailboxSample("bob", "a@x", "INBOX", 3, 40)
    kept = mailboxes.ROWS
    assert kept.out(sample) == ("INBOX", 3, 40)
    assert kept.into(["INBOX", 3, 40], "bob", "a@x") == sample
    assert senders.ROWS.written == ("sender", "count")
