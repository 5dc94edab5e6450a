"""Mail flow per user (emailtrack_user_stats), what cPanel already did to a user's outgoing mail
(listaccts), and disk use per address (Email::list_pops_with_disk through uapi_cpanel)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from conftest import WHM, fixture, module, series, value

from whm_exporter.simulator import Dataset
from whm_exporter.simulator.app import Params
from whm_exporter.whm import parse
from whm_exporter.whm.errors import WHMError

FLOW = "emailtrack_user_stats"
SENDERS = "get_unique_recipient_count_per_sender_for_user"
DATASET = Dataset(accounts=24, users=6, folders=3)
METRICS = {
    "whm_user_mail_sent_messages": "sent",
    "whm_user_mail_delivered": "delivered",
    "whm_user_mail_deferrals": "deferrals",
    "whm_user_mail_failures": "failures",
    "whm_user_mail_defer_failures": "defer_failures",
    "whm_user_mail_sent_bytes": "sent_bytes",
}


def flow_only(url: str, **overrides: Any) -> dict[str, Any]:
    """Only the mail flow, for the explicit user ``example`` of the official example."""
    return module(
        url,
        discovery={"enabled": False},
        mailboxes={"enabled": False},
        unique_recipients={"enabled": False},
        users={"example": []},
        **overrides,
    )


async def test_the_official_example_is_reported_exactly(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(canned={FLOW: fixture("emailtrack_user_stats.official.json")})
    found = await (await start_exporter(flow_only(whm.url))).probe()
    labels = {"user": "example", "window": "1h"}
    assert value(found, "whm_user_mail_sent_messages", **labels) == 14
    assert value(found, "whm_user_mail_delivered", **labels) == 14
    assert value(found, "whm_user_mail_deferrals", **labels) == 0
    assert value(found, "whm_user_mail_failures", **labels) == 0
    assert value(found, "whm_user_mail_defer_failures", **labels) == 0
    assert value(found, "whm_user_mail_sent_bytes", **labels) == 27444
    for limit in ("max_emails_per_hour", "max_defer_fail"):
        assert value(found, "whm_user_mail_limit_reached", user="example", limit=limit) == 1
    assert not series(found, "whm_api_errors")


async def test_every_user_and_window_with_string_counters(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET, string_counters=True)
    document = module(whm.url, mail_flow={"windows": ["1h", "1d"]})
    found = await (await start_exporter(document)).probe()
    active = 0
    for user in DATASET.user_names:
        for label, seconds in (("1h", 3600), ("1d", 86400)):
            flow = DATASET.mail_flow(user, seconds)
            for metric, field in METRICS.items():
                expected = getattr(flow, field) if flow.sent else None
                assert value(found, metric, user=user, window=label) == expected, metric
            active += bool(flow.sent)
    # Six series per active user and window, two limit flags per active user.
    assert all(len(series(found, m)) == active for m in METRICS)
    heavy = DATASET.heavy_user
    assert heavy is not None
    limits = series(found, "whm_user_mail_limit_reached")
    assert {dict(k)["user"] for k, v in limits.items() if v} == {heavy}


async def test_window_and_delivery_type_are_sent_as_whm_names_them(
    start_whm, start_exporter
) -> None:
    whm: WHM = await start_whm(DATASET)
    seen: list[Params] = []
    real = whm.sim.answer

    def spy(function: str, params: Params) -> dict[str, Any]:
        if function == FLOW:
            seen.append(params)
        return real(function, params)

    whm.sim.answer = spy  # type: ignore[method-assign]
    document = flow_only(whm.url, mail_flow={"windows": ["2h"], "delivery_type": "remote"})
    document["modules"]["default"]["unique_recipients"]["end_time_lag"] = "5m"
    await (await start_exporter(document)).probe()
    assert len(seen) == 1
    params = seen[0]
    assert params["deliverytype"] == "remote"
    assert int(params["endtime"]) - int(params["starttime"]) == 7200
    # Five minutes behind the clock at least (end_time_lag): never in WHM's future.
    assert int(params["endtime"]) <= time.time() - 300
    assert "start_time" not in params


async def test_bad_records_and_a_cut_list_are_reported_the_rest_served(
    start_whm, start_exporter
) -> None:
    body = fixture("emailtrack_user_stats.official.json")
    good = body["data"]["records"][0]
    body["data"]["records"] += [
        {**good, "USER": "nobody-here", "SENDCOUNT": "lots"},
        {k: v for k, v in good.items() if k != "USER"},
    ]
    body["metadata"]["overflowed"] = 1
    whm: WHM = await start_whm(canned={FLOW: body})
    found = await (await start_exporter(flow_only(whm.url))).probe()
    assert value(found, "whm_user_mail_sent_messages", user="example", window="1h") == 14
    assert value(found, "whm_api_errors", function=FLOW, reason="protocol") == 2
    assert value(found, "whm_api_errors", function=FLOW, reason="api") == 1
    assert value(found, "whm_api_calls", function=FLOW) == 1
    assert value(found, "whm_up") == 1


async def test_send_mail_role_disabled_is_reported_the_rest_continues(
    start_whm, start_exporter
) -> None:
    whm: WHM = await start_whm(DATASET, disabled_role="MailSend")
    found = await (await start_exporter(module(whm.url))).probe()
    assert value(found, "whm_api_errors", function=FLOW, reason="role_disabled") == 1
    assert not series(found, "whm_user_mail_sent_messages")
    assert series(found, "whm_mailbox_messages")


async def test_a_user_hot_by_defer_failures_has_its_senders_in_the_same_probe(
    start_whm, start_exporter
) -> None:
    dataset = Dataset(accounts=200, users=40, folders=3)
    heavy, sender = dataset.heavy_user, dataset.heavy_sender_address
    whm: WHM = await start_whm(dataset, latency=0.01)
    # No per-user totals reach the threshold: only the mail flow can make a user hot.
    document = module(
        whm.url, max_concurrency=4, unique_recipients={"priority_threshold": 1_000_000}
    )
    running = await start_exporter(document)
    # The very first probe: the mail flow answers before listaccts has named any user, and a
    # quiet user's senders would wait behind every mailbox (the rest cannot fit in 0.6 s).
    status, text = await running.get(
        "/probe?target=t&debug=true", **{"X-Prometheus-Scrape-Timeout-Seconds": "0.6"}
    )
    assert status == 200
    assert f'whm_sender_unique_recipients{{user="{heavy}",sender="{sender}",window="1h"}}' in text
    calls = [line.split()[:2] for line in text.splitlines() if line.startswith("  ")]
    server_wide = {"get_unique_sender_recipient_count_per_user", FLOW}
    assert {c[0] for c in calls[:2]} == server_wide
    assert calls[2] == ["listaccts:", "success"]
    # Asked as soon as listaccts named the user, beside the first list_pops_for calls.
    assert [SENDERS, heavy] in calls[3:7]
    assert not any(c[0] == SENDERS and c[1] != heavy for c in calls)


def test_mail_flow_parser_refuses_a_record_alone() -> None:
    body = fixture("emailtrack_user_stats.official.json")
    good = body["data"]["records"][0]
    body["data"]["records"] += [{**good, "USER": "b", "TOTALSIZE": -1}, {**good, "USER": ""}]
    answer = parse.mail_flow(body)
    assert [r.user for r in answer.records] == ["example"]
    assert len(answer.bad_records) == 2
    assert not answer.overflowed


async def test_listaccts_flags_show_what_cpanel_did_to_outgoing_mail(
    start_whm, start_exporter
) -> None:
    whm: WHM = await start_whm(DATASET)
    found = await (await start_exporter(module(whm.url))).probe()
    for user in DATASET.user_names:
        held = value(found, "whm_user_outgoing_mail_held", user=user)
        suspended = value(found, "whm_user_outgoing_mail_suspended", user=user)
        assert (held, suspended) == (DATASET.outgoing_held(user), DATASET.outgoing_suspended(user))
    assert any(DATASET.outgoing_held(u) for u in DATASET.user_names)
    assert any(DATASET.outgoing_suspended(u) for u in DATASET.user_names)


def test_pops_with_disk_parses_the_official_shape() -> None:
    (mailbox,) = parse.pops_with_disk(fixture("uapi_cpanel.list_pops_with_disk.json"))
    assert mailbox == parse.Mailbox("user@example.com", main=False, used=483, quota=None)


def test_pops_with_disk_failure_inside_the_uapi_result() -> None:
    body = fixture("uapi_cpanel.list_pops_with_disk.json")
    body["data"]["uapi"].update(
        status=0,
        data=None,
        errors=[
            "This functionality is not available because the “MailReceive” role is disabled"
            " on this server."
        ],
    )
    with pytest.raises(WHMError) as err:
        parse.pops_with_disk(body)
    assert err.value.reason == "role_disabled"


async def test_discovery_with_disk_reports_use_and_quota_per_address(
    start_whm, start_exporter
) -> None:
    whm: WHM = await start_whm(DATASET)
    found = await (
        await start_exporter(module(whm.url, discovery={"function": "list_pops_with_disk"}))
    ).probe()
    quotas = 0
    for user in DATASET.user_names:
        for address in DATASET.pops[user]:
            used, quota = DATASET.disk(address)
            labels = {"user": user, "account": address}
            assert value(found, "whm_account_disk_used_bytes", **labels) == used
            assert value(found, "whm_account_quota_bytes", **labels) == (quota or None)
            quotas += bool(quota)
    assert 0 < quotas < len(series(found, "whm_account_disk_used_bytes"))
    # As many discovery calls as with list_pops_for: one per user.
    assert whm.sim.stats.calls["uapi_cpanel"] == len(DATASET.user_names)
    assert value(found, "whm_data_items", function="list_pops_with_disk", state="fresh") == 6
    accounts = {dict(k)["account"] for k in series(found, "whm_mailbox_messages")}
    assert accounts == {a for u in DATASET.user_names for a in (*DATASET.pops[u], u)}


async def test_discovery_with_disk_and_receive_mail_disabled(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET, disabled_role="MailReceive")
    found = await (
        await start_exporter(module(whm.url, discovery={"function": "list_pops_with_disk"}))
    ).probe()
    errors = value(found, "whm_api_errors", function="list_pops_with_disk", reason="role_disabled")
    assert errors == len(DATASET.user_names)
    assert not series(found, "whm_account_disk_used_bytes")
    assert series(found, "whm_user_mail_sent_messages")
