"""The probe's metrics and both writers (text 0.0.4 and OpenMetrics) against prometheus_client's
own writers and parsers: same families, same samples, names and HELP."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import pytest
from conftest import samples
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text
from prometheus_client.registry import Collector

from whm_exporter import exposition
from whm_exporter.collect.state import Kept
from whm_exporter.exposition import render_text, write
from whm_exporter.families import dns_auth, logins, mail_queue, server_settings
from whm_exporter.metrics import families
from whm_exporter.series import Family
from whm_exporter.snapshot import (
    DiskSample,
    LimitSample,
    MailboxSample,
    SenderSample,
    Snapshot,
    UserFlags,
    UserSample,
)
from whm_exporter.whm.parse import MailFlow

HOSTILE = ['quote"d', "back\\slash", "new\nline", "ünïcødé ✉", "trailing\\", "{br}a,ces=", ""]


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
        items={("get_mailbox_status_list", "fresh"): 3, ("get_mailbox_status_list", "kept"): 1},
        data_age={"get_mailbox_status_list": 12.5},
        dropped={"whm_sender_unique_recipients": 4},
        log=[],
        errors_total={("get_mailbox_status_list", "protocol"): 3, ("listaccts", "auth"): 0},
        parts={
            "discovery_complete": True,
            "mailboxes": [
                MailboxSample("bob", f"a{i}@x", name, i, 2**40 + i)
                for i, name in enumerate(HOSTILE)
            ],
            "senders": [SenderSample("bob", name or "x", "1h", 600) for name in HOSTILE],
            "user_totals": [UserSample("bob", "1h", 7)],
            "mail_flow": [("1h", MailFlow("bob", 14, 14, 0, 0, 1, 27444, True, False))],
            "limits": [LimitSample("bob", "max_emails_per_hour", True, (150, 150))],
            "user_flags": [UserFlags("bob", held=True, suspended=False)],
            "disk": [DiskSample("bob", "a@x", 483, None), DiskSample("bob", "b@x", 10, 2**30)],
            "server_settings": server_settings.Settings(
                {server_settings.THRESHOLD: 250, server_settings.ACTION: "hold"},
                (server_settings.UserCaps("bob", 150, 0.4),),
                5,
            ),
            # Attempted logins name whatever an attacker typed.
            "logins": logins.Logins(
                True,
                logins.Failures(
                    {"imap": len(HOSTILE)},
                    Kept(tuple(logins.UserFailures(name, "imap", 1) for name in HOSTILE), 2),
                ),
                {"user": 1, "ip": 0},
            ),
            # A queue's senders and recipient domains are whatever the mail says.
            "mail_queue": mail_queue.Queue(
                3000,
                7,
                150,
                2**40,
                1_700_000_000,
                {"1h": 2000, "1d": 12},
                Kept(tuple(mail_queue.QueuedSender(n, "bob", 9) for n in HOSTILE), 5),
                Kept(tuple(mail_queue.QueuedDomain(n or "x", 9) for n in HOSTILE), 0),
            ),
            # A domain is what the inventory's addresses say after their "@".
            "dns_auth": dns_auth.MailAuth(
                tuple(
                    dns_auth.DomainState("bob", name or "x", "spf", "INVALID") for name in HOSTILE
                ),
                (),
            ),
        },
    )


def probe_families() -> list[Family]:
    fams = families(snapshot())
    # Values no probe makes today but a gauge may hold: the writers must still agree.
    fams.append(
        Family(
            "whm_test_odd_values",
            'HELP with "quotes", a back\\slash\nand a line feed.',
            ("v",),
            [
                (("nan",), float("nan")),
                (("inf",), float("inf")),
                (("-inf",), float("-inf")),
                (("big",), 1e300),
                (("small",), 1.5e-7),
                (("neg",), -3),
                (("zero",), 0.0),
            ],
        )
    )
    return fams


class FamiliesCollector(Collector):
    """prometheus_client's own view of the families, the reference both writers are held to."""

    def __init__(self, fams: Sequence[Family]) -> None:
        self._families = fams

    def collect(self) -> Iterator[Metric]:
        for f in self._families:
            kind = CounterMetricFamily if f.type == "counter" else GaugeMetricFamily
            family = kind(f.name, f.help, labels=f.labels)
            for values, value in f.samples:
                family.add_metric(values, value)
            yield family


def reference(fams: Sequence[Family]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FamiliesCollector(fams))
    return registry


def strict(parsed: Iterable[Metric]) -> list[Metric]:
    """Parsed families, failing on a duplicate family or series (a parser keeps both)."""
    out = list(parsed)
    assert len({m.name for m in out}) == len(out), "duplicate family"
    keys = [(s.name, tuple(sorted(s.labels.items()))) for m in out for s in m.samples]
    assert len(set(keys)) == len(keys), "duplicate series"
    return out


def comparable(fams: list[Metric]) -> list[tuple[object, ...]]:
    # NaN != NaN: compare values by their text.
    return [
        (
            m.name,
            m.documentation,
            m.type,
            [(s.name, s.labels, repr(float(s.value))) for s in m.samples],
        )
        for m in fams
    ]


def test_text_matches_prometheus_client_family_for_family() -> None:
    fams = probe_families()
    ours = render_text(fams).decode()
    theirs = generate_latest(reference(fams)).decode()
    assert comparable(strict(parse_text(ours))) == comparable(strict(parse_text(theirs)))
    assert [line for line in ours.splitlines() if line.startswith("#")] == [
        line for line in theirs.splitlines() if line.startswith("#")
    ]


def test_openmetrics_matches_prometheus_client_family_for_family() -> None:
    fams = probe_families()
    ours = b"".join(write(fams, openmetrics=True)).decode()
    theirs = generate_openmetrics(reference(fams)).decode()
    # The OpenMetrics parser refuses a missing or misplaced # EOF, bad escapes, bad numbers.
    assert comparable(strict(parse_om(ours))) == comparable(strict(parse_om(theirs)))
    assert [line for line in ours.splitlines() if line.startswith("#")] == [
        line for line in theirs.splitlines() if line.startswith("#")
    ]
    assert ours.endswith("\n# EOF\n")
    assert ours.count("# EOF") == 1


def test_both_formats_carry_the_same_families() -> None:
    fams = probe_families()
    text = comparable(strict(parse_text(render_text(fams).decode())))
    om = comparable(strict(parse_om(b"".join(write(fams, openmetrics=True)).decode())))
    assert text == om
    assert {name for name, *_ in om} == {f.name for f in fams}


def test_no_family_name_is_read_as_another_type_in_openmetrics() -> None:
    # A gauge named like a counter's or a histogram's sample would be taken for one.
    for f in families(snapshot()):
        assert not f.name.endswith(("_total", "_created", "_count", "_sum", "_bucket", "_info"))


@pytest.mark.parametrize("openmetrics", [False, True])
def test_a_large_answer_comes_in_bounded_chunks(
    monkeypatch: pytest.MonkeyPatch, openmetrics: bool
) -> None:
    monkeypatch.setattr(exposition, "CHUNK_LINES", 100)
    fam = Family("whm_x", "x", ("i",), [((str(i),), i) for i in range(1050)])
    chunks = list(write([fam], openmetrics))
    assert len(chunks) == 11
    # HELP and TYPE count as one entry of the chunk.
    assert max(c.count(b"\n") for c in chunks) <= 101
    whole = b"".join(chunks).decode()
    found = strict(parse_om(whole) if openmetrics else parse_text(whole))
    assert [s.value for s in found[0].samples] == list(range(1050))


def test_label_values_are_escaped_into_valid_exposition() -> None:
    text = render_text(families(snapshot())).decode()
    found = {dict(k)["mailbox"] for (n, k) in samples(text) if n == "whm_mailbox_messages"}
    assert found == set(HOSTILE)
    assert 'mailbox="new\\nline"' in text
    assert 'mailbox="quote\\"d"' in text


def test_no_metric_carries_a_target_label_or_a_timestamp() -> None:
    text = render_text(families(snapshot())).decode()
    for family in parse_text(text):
        for sample in family.samples:
            assert "target" not in sample.labels
            assert "instance" not in sample.labels
            assert sample.timestamp is None
