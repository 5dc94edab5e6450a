"""The probe's metrics: the fast text renderer against prometheus_client's, names and HELP."""

from __future__ import annotations

from conftest import samples
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families

from whm_exporter.config import build_config
from whm_exporter.exposition import probe_registry, render_text
from whm_exporter.metrics import families
from whm_exporter.snapshot import MailboxSample, SenderSample, Snapshot, UserSample

HOSTILE = ['quote"d', "back\\slash", "new\nline", "ünïcødé ✉", "trailing\\", ""]


def snapshot() -> Snapshot:
    return Snapshot(
        up=True,
        duration=0.123456789,
        timeout=29.5,
        deadline_exceeded=False,
        calls={"get_mailbox_status_list": 3, "listaccts": 1},
        errors={("get_mailbox_status_list", "protocol"): 1},
        discovered_users=2,
        discovered_accounts=3,
        mailboxes=[
            MailboxSample("bob", f"a{i}@x", name, i, 2**40 + i) for i, name in enumerate(HOSTILE)
        ],
        senders=[SenderSample("bob", name or "x", "1h", 600) for name in HOSTILE],
        user_totals=[UserSample("bob", "1h", 7)],
        dropped={"whm_sender_unique_recipients": 4},
        cache_age={"get_mailbox_status_list": 12.5},
        log=[],
    )


def module_with_cache():  # type: ignore[no-untyped-def]
    document = {"modules": {"m": {"token": "x", "mailboxes": {"cache": "5m"}}}}
    return build_config(document, {}).config.modules["m"]


def test_fast_renderer_matches_prometheus_client_sample_for_sample() -> None:
    fams = families(snapshot(), module_with_cache())
    ours = render_text(fams).decode()
    theirs = generate_latest(probe_registry(fams)).decode()
    assert samples(ours) == samples(theirs)
    help_lines = [line for line in theirs.splitlines() if line.startswith("#")]
    assert [line for line in ours.splitlines() if line.startswith("#")] == help_lines


def test_label_values_are_escaped_into_valid_exposition() -> None:
    text = render_text(families(snapshot(), module_with_cache())).decode()
    found = {dict(k)["mailbox"] for (n, k) in samples(text) if n == "whm_mailbox_messages"}
    assert found == set(HOSTILE)
    assert 'mailbox="new\\nline"' in text
    assert 'mailbox="quote\\"d"' in text


def test_openmetrics_output_parses() -> None:
    text = generate_openmetrics(probe_registry(families(snapshot(), module_with_cache()))).decode()
    names = {f.name for f in parse_om(text)}
    assert {"whm_up", "whm_mailbox_messages", "whm_cache_age_seconds"} <= names


def test_help_says_when_answers_are_cached() -> None:
    fams = {f.name: f for f in families(snapshot(), module_with_cache())}
    assert "up to 5m old" in fams["whm_mailbox_messages"].help
    assert "cache" not in fams["whm_sender_unique_recipients"].help


def test_cache_age_only_when_a_cache_is_on() -> None:
    plain = build_config({"modules": {"m": {"token": "x"}}}, {}).config.modules["m"]
    assert "whm_cache_age_seconds" not in {f.name for f in families(snapshot(), plain)}


def test_no_metric_carries_a_target_label_or_a_timestamp() -> None:
    text = render_text(families(snapshot(), module_with_cache())).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert "target" not in sample.labels
            assert "instance" not in sample.labels
            assert sample.timestamp is None
