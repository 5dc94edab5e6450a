"""The exporter and the simulator on loopback: what a scrape of /probe returns, value by value,
and how every failure of WHM shows as a gauge while the rest of the probe still reports."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import TOKEN, WHM, module, require_tool, samples, series, value

from whm_exporter.collect.state import DNS_KINDS, LOGIN_KINDS, SETTING_KEYS
from whm_exporter.config import load_config
from whm_exporter.exporter import Exporter
from whm_exporter.families.mailboxes import MAILBOX_LIST
from whm_exporter.metrics import ExporterMetrics
from whm_exporter.simulator import Dataset

ROOT = Path(__file__).parent.parent

DATASET = Dataset(accounts=20, users=5, folders=5)


async def test_values_equal_the_servers_data_account_by_account(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET)
    running = await start_exporter(module(whm.url, unique_recipients={"windows": ["1h", "1d"]}))
    found = await running.probe()
    assert value(found, "whm_up") == 1
    assert value(found, "whm_probe_deadline_exceeded") == 0
    expected_accounts = 0
    for user in DATASET.user_names:
        for account in (*DATASET.pops[user], user):
            expected_accounts += 1
            for folder in DATASET.mailbox(account):
                labels = {"user": user, "account": account, "mailbox": folder.name}
                assert value(found, "whm_mailbox_messages", **labels) == folder.messages
                assert value(found, "whm_mailbox_size_bytes", **labels) == folder.vsize
        for label, seconds in (("1h", 3600), ("1d", 86400)):
            for sender, count in DATASET.senders(user, seconds).items():
                got = value(
                    found, "whm_sender_unique_recipients", user=user, sender=sender, window=label
                )
                assert got == count
            total = DATASET.user_total(user, seconds)
            if total:
                assert value(found, "whm_user_unique_recipients", user=user, window=label) == total
    assert len(series(found, "whm_mailbox_messages")) == expected_accounts * 5
    assert value(found, "whm_discovered_accounts") == expected_accounts
    assert value(found, "whm_discovered_users") == len(DATASET.user_names)
    assert not series(found, "whm_api_errors")


async def test_explicit_accounts_without_discovery(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET)
    user = DATASET.user_names[1]
    account = DATASET.pops[user][0]
    running = await start_exporter(
        module(whm.url, discovery={"enabled": False}, users={user: [account]})
    )
    found = await running.probe()
    assert {dict(k)["account"] for k in series(found, "whm_mailbox_messages")} == {account}
    assert whm.sim.stats.calls["listaccts"] == 0
    assert value(found, "whm_api_calls", function="get_mailbox_status_list") == 1


async def test_string_counters_give_the_same_numbers(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET, string_counters=True)
    found = await (await start_exporter(module(whm.url))).probe()
    user = DATASET.user_names[0]
    folder = DATASET.mailbox(user)[0]
    assert (
        value(found, "whm_mailbox_messages", user=user, account=user, mailbox=folder.name)
        == folder.messages
    )


async def test_bad_token_is_whm_up_zero_with_auth_errors(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET)
    document = module(whm.url, discovery={"enabled": False}, users={"acme001": ["acme001"]})
    document["modules"]["default"]["token"] = "wrong"
    status, text = await (await start_exporter(document)).get("/probe?target=t")
    assert status == 200
    found = samples(text)
    assert value(found, "whm_up") == 0
    assert value(found, "whm_api_errors", function="get_mailbox_status_list", reason="auth") == 1


async def test_role_disabled_is_reported_not_fatal(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET, disabled_role="MailSend")
    found = await (await start_exporter(module(whm.url))).probe()
    assert value(found, "whm_up") == 1
    users = len(DATASET.user_names)
    errors = value(
        found,
        "whm_api_errors",
        function="get_unique_recipient_count_per_sender_for_user",
        reason="role_disabled",
    )
    assert errors == users
    assert series(found, "whm_mailbox_messages")
    assert not series(found, "whm_sender_unique_recipients")


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("garbage", "protocol"),
        ("http500", "http"),
        ("html200", "protocol"),
        ("api_error", "api"),
        ("slow", "timeout"),
    ],
)
async def test_one_failing_account_does_not_hide_the_others(
    start_whm, start_exporter, fault: str, reason: str
) -> None:
    broken = DATASET.pops[DATASET.user_names[0]][0]
    whm: WHM = await start_whm(DATASET, faults={broken: fault})
    found = await (await start_exporter(module(whm.url, request_timeout="300ms"))).probe()
    assert value(found, "whm_up") == 1
    assert value(found, "whm_api_errors", function="get_mailbox_status_list", reason=reason) == 1
    accounts = {dict(k)["account"] for k in series(found, "whm_mailbox_messages")}
    assert broken not in accounts
    assert len(accounts) == DATASET.accounts + len(DATASET.user_names) - 1


async def test_scrape_timeout_header_sets_the_deadline(start_whm, start_exporter) -> None:
    broken = DATASET.pops[DATASET.user_names[0]][0]
    whm: WHM = await start_whm(DATASET, faults={broken: "slow"})
    running = await start_exporter(module(whm.url, request_timeout="1m", timeout="1m"))
    started = time.monotonic()
    found = await running.probe(**{"X-Prometheus-Scrape-Timeout-Seconds": "1.5"})
    elapsed = time.monotonic() - started
    assert value(found, "whm_probe_deadline_exceeded") == 1
    assert value(found, "whm_probe_timeout_seconds") == 1.0
    assert 0.9 <= elapsed < 5, elapsed
    # What answered before the deadline is still served.
    assert len(series(found, "whm_mailbox_messages")) > 0


async def test_concurrency_never_exceeds_the_bound(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET, latency=0.03)
    found = await (await start_exporter(module(whm.url, max_concurrency=3))).probe()
    assert value(found, "whm_up") == 1
    assert whm.sim.stats.max_in_flight == 3


async def test_auto_falls_back_to_the_object_form_and_remembers(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET, no_list_function=True)
    running = await start_exporter(module(whm.url, max_concurrency=1))
    first = await running.probe()
    assert value(first, "whm_api_calls", function="get_mailbox_status_list") == 1
    assert value(first, "whm_api_calls", function="get_mailbox_status") == DATASET.accounts + 5
    second = await running.probe()
    assert value(second, "whm_api_calls", function="get_mailbox_status_list") is None
    assert not series(second, "whm_api_errors")
    assert len(series(second, "whm_mailbox_messages")) == (DATASET.accounts + 5) * 5


async def test_object_form_chosen_in_config(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET)
    found = await (
        await start_exporter(module(whm.url, mailboxes={"function": "get_mailbox_status"}))
    ).probe()
    assert whm.sim.stats.calls["get_mailbox_status_list"] == 0
    assert len(series(found, "whm_mailbox_messages")) == (DATASET.accounts + 5) * 5


async def test_unique_recipients_window_ends_behind_the_servers_clock(
    start_whm, start_exporter
) -> None:
    # The simulator refuses an end_time in its future, as WHM does; a lag of 0 still passes.
    whm: WHM = await start_whm(DATASET)
    found = await (
        await start_exporter(module(whm.url, unique_recipients={"end_time_lag": "0s"}))
    ).probe()
    assert series(found, "whm_sender_unique_recipients")
    assert not series(found, "whm_api_errors")


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("/probe", "missing 'target'"),
        ("/probe?target=nope", "unknown target"),
        ("/probe?target=h.example&module=nope", "unknown module"),
    ],
)
async def test_bad_probe_requests_are_400_with_a_reason(
    start_whm, start_exporter, query: str, reason: str
) -> None:
    whm: WHM = await start_whm(DATASET)
    status, text = await (await start_exporter(module(whm.url))).get(query)
    assert status == 400
    assert reason in text
    assert text.count("\n") == 1


async def test_openmetrics_when_asked(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET)
    running = await start_exporter(module(whm.url))
    async with running.session.get(
        running.url + "/probe?target=t",
        headers={"Accept": "application/openmetrics-text; version=1.0.0"},
    ) as resp:
        text = await resp.text()
        assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
    assert text.rstrip().endswith("# EOF")


async def test_debug_shows_each_call_then_the_metrics(start_whm, start_exporter) -> None:
    broken = DATASET.pops[DATASET.user_names[0]][0]
    whm: WHM = await start_whm(DATASET, faults={broken: "api_error"})
    status, text = await (await start_exporter(module(whm.url))).get("/probe?target=t&debug=true")
    assert status == 200
    assert f"get_mailbox_status_list {broken}: api" in text
    assert "Something went wrong" in text
    assert "whm_up 1\n" in text


async def test_own_metrics_landing_and_health(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET)
    running = await start_exporter(module(whm.url))
    await running.probe()
    status, text = await running.get("/metrics")
    found = samples(text)
    assert value(found, "whm_exporter_probes_total", target="t", result="success") == 1
    assert value(found, "whm_exporter_probes_total", target="t", result="failure") == 0
    assert (
        value(
            found,
            "whm_exporter_api_requests_total",
            target="t",
            function="listaccts",
            outcome="success",
        )
        == 1
    )
    assert (
        value(
            found,
            "whm_exporter_api_request_duration_seconds_count",
            target="t",
            function="listaccts",
        )
        == 1
    )
    assert any(name == "whm_exporter_build_info" for name, _ in found)
    assert any(name == "process_resident_memory_bytes" for name, _ in found)
    assert not any(name.startswith("whm_mailbox") for name, _ in found)
    status, page = await running.get("/")
    assert status == 200
    assert "probe?target=t" in page
    assert "<td>t</td><td>up</td>" in page  # the probe above, among the recent ones
    assert TOKEN not in page
    assert (await running.get("/-/healthy"))[0] == 200
    assert (await running.get("/-/ready"))[0] == 200


async def test_promtool_finds_nothing_in_a_real_probe(start_whm, start_exporter) -> None:
    promtool = require_tool("promtool")
    whm: WHM = await start_whm(DATASET)
    running = await start_exporter(module(whm.url, unique_recipients={"windows": ["1h", "24h"]}))
    for path in ("/probe?target=t", "/metrics"):
        _, text = await running.get(path)
        result = await asyncio.to_thread(
            subprocess.run,
            [promtool, "check", "metrics"],
            input=text,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.strip() == "", result.stdout
        assert result.stderr.strip() == "", result.stderr


async def test_the_example_config_runs_as_is_against_the_simulator(
    start_whm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """config.example.yaml points at the simulator's default address with its default token
    in WHM_TOKEN, and names no account of its own: copied, it reports nothing false."""
    example = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    (target,) = example["targets"].values()
    assert target["url"] == "http://127.0.0.1:2087"
    assert not target["users"]
    assert example["modules"]["default"]["token_env"] == "WHM_TOKEN"
    whm: WHM = await start_whm(DATASET)
    whm.sim.token = "simulator-token"  # python -m whm_exporter.simulator's default
    monkeypatch.setenv("WHM_TOKEN", whm.sim.token)
    target["url"] = whm.url  # the one change: a free port instead of 2087
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(example))
    exporter = Exporter(load_config(path), ExporterMetrics(), str(path))
    try:
        found = await exporter.probe(exporter.targets["whm1"], 10)
    finally:
        await exporter.close()
    assert found.up
    assert not found.errors
    assert found.discovered_accounts == DATASET.accounts + DATASET.users


async def test_a_reseller_token_costs_each_root_page_one_error_at_its_refresh(
    start_whm, start_exporter
) -> None:
    # Issue 26's Done-when: the Tweak Settings, cPHulk, Exim's queue and the mail DNS refused (a
    # reseller's token: WHM shows them to root only); only those sections fail, each once per
    # refresh, and everything else of the probe is whole.
    refused = [
        "get_tweaksetting",
        *(k.value for k in LOGIN_KINDS),
        "fetch_mail_queue",
        *(k.value for k in DNS_KINDS),
    ]
    ds = Dataset(accounts=8, users=2, folders=2)
    whm: WHM = await start_whm(ds, faults=dict.fromkeys(refused, "api_denied"))
    running = await start_exporter(module(whm.url))
    probes = []
    for _ in range(3):
        probes.append(await running.probe())
        # The mail DNS goes on in the background: let it end before the next probe.
        await running.exporter.targets["t"].collection.settled()
    asked = {f: whm.sim.stats.calls[f] for f in refused}
    # One call each (a key each for the settings), but the mail DNS's: the first batch and its
    # two halves, refused alike, before the function counts as refused.
    assert asked == {
        **dict.fromkeys(refused, 1),
        "get_tweaksetting": len(SETTING_KEYS),
        **{k.value: 3 for k in DNS_KINDS},
    }
    last = probes[-1]
    for function in refused:
        assert (
            value(last, "whm_api_call_errors_total", function=function, reason="api")
            == asked[function]
        ), function
        assert value(last, "whm_data_items", function=function, state="missing"), function
    for found in probes:
        assert value(found, "whm_up") == 1
        assert value(found, "whm_probe_deadline_exceeded") == 0
        assert value(found, "whm_data_items", function=MAILBOX_LIST, state="missing") == 0
        assert value(found, "whm_user_mail_sent_messages", user=ds.user_names[0], window="1h")
        assert value(found, "whm_user_unique_recipients", user=ds.user_names[0], window="1h")
        for metric in (
            "whm_mail_queue_messages",
            "whm_cphulk_enabled",
            "whm_domain_mail_auth_valid",
        ):
            assert not series(found, metric), metric
    # Later probes ask none of them again: each waits its refresh.
    assert value(last, "whm_api_errors", function="fetch_mail_queue", reason="api") is None
