"""The probe's metrics: the fast text renderer against prometheus_client's, names and HELP."""

from __future__ import annotations

from conftest import samples
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families

from whm_exporter.exposition import probe_registry, render_text
from whm_exporter.metrics import families
from whm_exporter.snapshot import (
    DiskSample,
    LimitSample,
    MailboxSample,
    MailFlowSample,
    SenderSample,
    Snapshot,
    UserFlags,
    UserSample,
)

HOSTILE = ['quote"d', "back\\slash", "new\nline", "ünïcødé ✉", "trailing\\", ""]


def snapshot() -> Snapshot:
    return Snapshot(
        up=True,
        duration=0.123456789,
        timeout=29.5,
        deadline_exceeded=False,
        calls={"get_mailbox_status_list": 3, "listaccts": 1},
        errors={("get_mailbox_status_list", "protocol"): 1},
        abandoned={"list_pops_for": 2},
        discovered_users=2,
        discovered_accounts=3,
        discovery_complete=True,
        items={("get_mailbox_status_list", "fresh"): 3, ("get_mailbox_status_list", "kept"): 1},
        data_age={"get_mailbox_status_list": 12.5},
        mailboxes=[
            MailboxSample("bob", f"a{i}@x", name, i, 2**40 + i) for i, name in enumerate(HOSTILE)
        ],
        senders=[SenderSample("bob", name or "x", "1h", 600) for name in HOSTILE],
        user_totals=[UserSample("bob", "1h", 7)],
        mail_flow=[MailFlowSample("bob", "1h", 14, 14, 0, 0, 1, 27444)],
        limits=[LimitSample("bob", "max_emails_per_hour", True)],
        user_flags=[UserFlags("bob", held=True, suspended=False)],
        disk=[DiskSample("bob", "a@x", 483, None), DiskSample("bob", "b@x", 10, 2**30)],
        dropped={"whm_sender_unique_recipients": 4},
        log=[],
    )


def test_fast_renderer_matches_prometheus_client_sample_for_sample() -> None:
    fams = families(snapshot())
    ours = render_text(fams).decode()
    theirs = generate_latest(probe_registry(fams)).decode()
    assert samples(ours) == samples(theirs)
    help_lines = [line for line in theirs.splitlines() if line.startswith("#")]
    assert [line for line in ours.splitlines() if line.startswith("#")] == help_lines


def test_label_values_are_escaped_into_valid_exposition() -> None:
    text = render_text(families(snapshot())).decode()
    found = {dict(k)["mailbox"] for (n, k) in samples(text) if n == "whm_mailbox_messages"}
    assert found == set(HOSTILE)
    assert 'mailbox="new\\nline"' in text
    assert 'mailbox="quote\\"d"' in text


def test_openmetrics_output_parses() -> None:
    text = generate_openmetrics(probe_registry(families(snapshot()))).decode()
    names = {f.name for f in parse_om(text)}
    assert {"whm_up", "whm_mailbox_messages", "whm_data_age_seconds"} <= names


def test_no_metric_carries_a_target_label_or_a_timestamp() -> None:
    text = render_text(families(snapshot())).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert "target" not in sample.labels
            assert "instance" not in sample.labels
            assert sample.timestamp is None
