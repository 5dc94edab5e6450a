"""Discovery, the shared bound, coalesced probes, cardinality limits and unlisted hosts,
all against the simulator on loopback."""

from __future__ import annotations

import asyncio
from typing import Any

from conftest import TOKEN, WHM, module, series, value

from whm_exporter.simulator import Dataset

# 12 users: the tenth (index 9) is suspended.
DATASET = Dataset(accounts=40, users=12, folders=4)


def accounts_of(found: Any) -> set[str]:
    return {dict(k)["account"] for k in series(found, "whm_mailbox_messages")}


async def test_discovery_scrapes_every_mailbox_and_skips_suspended(
    start_whm, start_exporter
) -> None:
    whm: WHM = await start_whm(DATASET)
    found = await (await start_exporter(module(whm.url))).probe()
    suspended = DATASET.user_names[9]
    assert DATASET.suspended(suspended)
    expected = {a for u in DATASET.user_names if u != suspended for a in (*DATASET.pops[u], u)}
    assert accounts_of(found) == expected
    assert value(found, "whm_discovered_users") == len(DATASET.user_names) - 1
    assert value(found, "whm_discovered_accounts") == len(expected)
    # WHM's per-user totals cover every user, and all become series: a suspended account whose
    # mail still flows is one to watch (skip_suspended chooses the per-account calls only).
    assert DATASET.user_total(suspended, 3600) > 0
    totals = {dict(k)["user"] for k in series(found, "whm_user_unique_recipients")}
    assert totals == {u for u in DATASET.user_names if DATASET.user_total(u, 3600)}


async def test_discovery_can_include_suspended_and_skip_main_accounts(
    start_whm, start_exporter
) -> None:
    whm: WHM = await start_whm(DATASET)
    document = module(whm.url, discovery={"skip_suspended": False, "main_account": False})
    found = await (await start_exporter(document)).probe()
    assert accounts_of(found) == {a for u in DATASET.user_names for a in DATASET.pops[u]}


async def test_discovery_filters_on_users_and_accounts(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET)
    first, second = DATASET.user_names[:2]
    document = module(
        whm.url,
        discovery={
            "include_users": [f"{first}|{second}"],
            "exclude_accounts": [r"sales@.*", second],
        },
        users={"explicit": ["kept@explicit.example"]},
    )
    found = await (await start_exporter(document)).probe()
    expected = {a for a in (*DATASET.pops[first], first) if not a.startswith("sales@")}
    expected |= {a for a in DATASET.pops[second] if not a.startswith("sales@")}
    # Explicit accounts are always scraped (here the simulator refuses the unknown one).
    assert accounts_of(found) == expected
    assert value(found, "whm_api_errors", function="get_mailbox_status_list", reason="api") == 1
    assert whm.sim.stats.calls["list_pops_for"] == 2


async def test_failed_refresh_keeps_the_last_good_list(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET)
    running = await start_exporter(module(whm.url, discovery={"refresh": "0s"}))
    first = await running.probe()
    whm.sim.knobs.faults["listaccts"] = "http500"
    second = await running.probe()
    assert value(second, "whm_api_errors", function="listaccts", reason="http") == 1
    assert accounts_of(second) == accounts_of(first)
    whm.sim.knobs.faults.clear()
    whm.sim.knobs.faults[DATASET.user_names[0]] = "garbage"  # list_pops_for of one user
    third = await running.probe()
    assert value(third, "whm_api_errors", function="list_pops_for", reason="protocol") == 1
    assert accounts_of(third) >= set(DATASET.pops[DATASET.user_names[0]])


async def test_discovery_is_cached_for_refresh(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET)
    running = await start_exporter(module(whm.url))
    await running.probe()
    found = await running.probe()
    assert whm.sim.stats.calls["listaccts"] == 1
    assert value(found, "whm_api_calls", function="listaccts") is None
    assert (value(found, "whm_discovered_accounts") or 0) > 0


async def test_overlapping_probes_share_one_collection(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET, latency=0.02)
    running = await start_exporter(module(whm.url))
    a, b = await asyncio.gather(running.probe(), running.probe())
    one_probe = dict(whm.sim.stats.calls)
    # Same answers for both scrapers, WHM saw each call once.
    assert series(a, "whm_mailbox_messages") == series(b, "whm_mailbox_messages")
    assert one_probe["listaccts"] == 1
    assert one_probe["get_mailbox_status_list"] == len(series(a, "whm_mailbox_messages")) // 4
    # Each call is reported once, by whichever of the two probes was served first.
    reported = [v for p in (a, b) for (n, _), v in p.items() if n == "whm_api_calls"]
    assert sum(one_probe.values()) == sum(reported)


async def test_bound_is_shared_by_targets_naming_one_server(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET, latency=0.02)
    document = module(whm.url, max_concurrency=2)
    document["targets"]["t2"] = {"url": whm.url}
    running = await start_exporter(document)
    await asyncio.gather(running.probe("t"), running.probe("t2"))
    assert whm.sim.stats.max_in_flight == 2


async def test_top_senders_and_series_dropped(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET)
    document = module(whm.url, unique_recipients={"max_senders_per_user": 1, "min_count": 2})
    found = await (await start_exporter(document)).probe()
    kept = series(found, "whm_sender_unique_recipients")
    per_user: dict[str, list[float]] = {}
    for labels, v in kept.items():
        per_user.setdefault(dict(labels)["user"], []).append(v)
    assert all(len(v) == 1 for v in per_user.values())
    total = 0
    for user in DATASET.user_names:
        if DATASET.suspended(user):
            continue
        counts = DATASET.senders(user, 3600)
        total += len(counts)
        if any(c >= 2 for c in counts.values()):
            assert per_user[user] == [max(counts.values())]
    assert value(found, "whm_series_dropped", metric="whm_sender_unique_recipients") == total - len(
        kept
    )


async def test_folder_filters_and_series_dropped(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET)
    document = module(
        whm.url,
        mailboxes={
            "include_folders": ["INBOX", r"INBOX\..*"],
            "exclude_folders": [r"INBOX\.(Trash|Drafts)"],
        },
    )
    found = await (await start_exporter(document)).probe()
    folders = {dict(k)["mailbox"] for k in series(found, "whm_mailbox_messages")}
    assert folders == {"INBOX", "INBOX.Sent"}
    accounts = value(found, "whm_discovered_accounts")
    assert accounts
    assert value(found, "whm_series_dropped", metric="whm_mailbox_messages") == 2 * accounts
    assert value(found, "whm_series_dropped", metric="whm_mailbox_size_bytes") == 2 * accounts


async def test_unlisted_host_needs_a_full_allowed_targets_match(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET)
    port = whm.url.rsplit(":", 1)[1]
    document = module(whm.url, allowed_targets=[r"127\.0\.0\.1"])
    document["targets"] = {}
    running = await start_exporter(document)
    for target in (f"localhost:{port}", f"127.0.0.10:{port}", f"127.0.0.1.evil.example:{port}"):
        status, text = await running.get(f"/probe?target={target}&module=default")
        assert status == 400, target
        assert "allowed_targets" in text
    assert whm.sim.stats.calls.total() == 0
    status, text = await running.get(f"/probe?target=http://127.0.0.1:{port}&module=default")
    assert status == 200
    assert "whm_up 1\n" in text
    _, own = await running.get("/metrics")
    assert 'whm_exporter_probes_total{result="success",target="default"} 1.0' in own
    assert TOKEN not in own


async def test_module_without_allowed_targets_refuses_every_host(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET)
    status, text = await (await start_exporter(module(whm.url))).get(
        "/probe?target=127.0.0.1&module=default"
    )
    assert status == 400
    assert "allowed_targets" in text
    assert whm.sim.stats.calls.total() == 0
