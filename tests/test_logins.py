"""Failed logins and blocks from cPHulk (issue 26): cphulk_status, get_cphulk_failed_logins,
get_cphulk_user_brutes, get_cphulk_brutes and get_cphulk_excessive_brutes, from the fixtures of
their official examples and of real servers' forms (server-local times, countries, cPHulk off,
malformed rows), through the family and end to end on the simulator."""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import WHM, Running, fixture, module, only, series, value
from statekit import answer, discovered, fail, order, state_for

from whm_exporter.collect import schedule
from whm_exporter.collect.state import LOGIN_KINDS, SETTING_KEYS, Kept, Kind
from whm_exporter.families import logins
from whm_exporter.families.logins import Failures, UserFailures, top_users
from whm_exporter.metrics import families
from whm_exporter.probe import snapshot
from whm_exporter.simulator import Dataset
from whm_exporter.simulator.dataset import BRUTE_FAILURES, DEMO
from whm_exporter.whm import parse
from whm_exporter.whm.errors import WHMError

FUNCTIONS = [k.value for k in LOGIN_KINDS]
FAILED = "get_cphulk_failed_logins"
LISTS = {
    "get_cphulk_failed_logins": "failed_logins",
    "get_cphulk_user_brutes": "user_brutes",
    "get_cphulk_brutes": "brutes",
    "get_cphulk_excessive_brutes": "excessive_brutes",
}


def rows_of(function: str, body: Any) -> parse.CphulkRows[Any]:
    if function in ("get_cphulk_failed_logins", "get_cphulk_user_brutes"):
        return parse.cphulk_failures(body, function)
    return parse.cphulk_blocks(body, function)


# --- the answers ---------------------------------------------------------------------------------


def test_cphulk_status_official_example_and_off() -> None:
    assert parse.cphulk_status(fixture("cphulk_status.official.json")) is True
    assert parse.cphulk_status(fixture("cphulk_status.disabled.json")) is False


@pytest.mark.parametrize("enabled", [2, "yes", None])
def test_cphulk_status_of_another_value_is_refused(enabled: object) -> None:
    body = fixture("cphulk_status.official.json")
    body["data"]["is_enabled"] = enabled
    with pytest.raises(WHMError, match=r"^protocol: data\.is_enabled"):
        parse.cphulk_status(body)


def test_the_official_failed_login_with_iso_times() -> None:
    found = parse.cphulk_failures(fixture(f"{FAILED}.official.json"), FAILED)
    assert found == parse.CphulkRows((parse.LoginFailure("example", "ftp"),), ())


def test_real_servers_rows_with_local_times_and_countries() -> None:
    found = parse.cphulk_failures(fixture(f"{FAILED}.real_forms.json"), FAILED)
    assert found.bad_records == ()
    assert Counter(r.service for r in found.rows) == {"imap": 2, "smtp": 1, "pop3": 1, "cpaneld": 1}
    assert Counter(r.user for r in found.rows) == {
        "info@acme001.example": 3,
        "sales@birch002.example": 1,
        "cedar003": 1,
    }


@pytest.mark.parametrize("function", list(LISTS))
@pytest.mark.parametrize("form", ["official", "real_forms"])
def test_each_list_reads_its_reference_fields_and_real_forms(function: str, form: str) -> None:
    name = f"{function}.{form}.json"
    if function != FAILED and form == "official":
        name = f"{function}.official_fields.json"
    found = rows_of(function, fixture(name))
    assert found.bad_records == ()
    assert len(found.rows) == {"official": 1}.get(form, 5 if function == FAILED else 1)


@pytest.mark.parametrize("function", list(LISTS))
def test_cphulk_off_is_no_rows_not_an_error(function: str) -> None:
    assert rows_of(function, fixture(f"{function}.cphulk_disabled.json")) == parse.CphulkRows(
        (), ()
    )


@pytest.mark.parametrize("function", list(LISTS))
def test_another_refusal_is_the_calls_error(function: str) -> None:
    body = {"metadata": {"command": function, "result": 0, "reason": "Permission denied"}}
    with pytest.raises(WHMError) as caught:
        rows_of(function, body)
    assert (caught.value.reason, caught.value.detail) == ("api", "Permission denied")


def test_a_row_with_an_unreadable_time_costs_only_itself() -> None:
    found = parse.cphulk_failures(fixture(f"{FAILED}.malformed.json"), FAILED)
    assert found.rows == (parse.LoginFailure("info@acme001.example", "imap"),)
    assert found.bad_records == (
        "failed_logins row 1: logintime is not a time: '0000-00-00 00:00:00'",
        "failed_logins row 2: logintime is not a time: 'yesterday'",
    )
    blocks = parse.cphulk_blocks(fixture("get_cphulk_brutes.malformed.json"), "get_cphulk_brutes")
    assert (len(blocks.rows), len(blocks.bad_records)) == (1, 1)
    assert "'10/06/2024 8:01'" in blocks.bad_records[0]


@pytest.mark.parametrize(
    ("function", "spoil", "said"),
    [
        (FAILED, lambda r: r.pop("service"), "has no 'service'"),
        (FAILED, lambda r: r.update(user=""), "user is not a non-empty string"),
        (FAILED, lambda r: r.update(exptime=""), "exptime is not a time"),
        ("get_cphulk_user_brutes", lambda r: r.pop("user"), "has no 'user'"),
        ("get_cphulk_brutes", lambda r: r.pop("ip"), "has no 'ip'"),
        ("get_cphulk_excessive_brutes", lambda r: r.pop("logintime"), "logintime is not a time"),
    ],
)
def test_a_row_without_what_is_counted_is_refused_alone(
    function: str, spoil: Any, said: str
) -> None:
    body = fixture(f"{function}.real_forms.json")
    rows = body["data"][LISTS[function]]
    spoil(rows[0])
    found = rows_of(function, {**body, "data": {LISTS[function]: [*rows, "not a row"]}})
    assert len(found.rows) == len(rows) - 1
    assert said in found.bad_records[0]
    assert "is str, expected an object" in found.bad_records[1]


# --- the family ----------------------------------------------------------------------------------


def failures(*rows: tuple[str, str, int]) -> tuple[parse.LoginFailure, ...]:
    return tuple(parse.LoginFailure(u, s) for u, s, n in rows for _ in range(n))


def test_the_top_users_by_failures_over_all_services_the_rest_counted() -> None:
    rows = failures(("a@x", "imap", 3), ("a@x", "smtp", 2), ("b", "cpaneld", 4), ("c@x", "pop3", 4))
    assert top_users(rows, 2) == Failures(
        {"cpaneld": 4, "imap": 3, "pop3": 4, "smtp": 2},
        Kept(
            (
                UserFailures("a@x", "imap", 3),
                UserFailures("a@x", "smtp", 2),
                UserFailures("b", "cpaneld", 4),
            ),
            1,
        ),
    )
    # A tie (b and c@x, 4 each) goes by name, so the same stay across scrapes.
    assert [r.user for r in top_users(rows, 1).users.records] == ["a@x", "a@x"]
    assert top_users(rows, 1).users.dropped == 2
    assert top_users(rows, 0).users.dropped == 0
    assert top_users((), 20) == Failures({}, Kept(()))


def logins_state(**section: Any) -> Any:
    return state_for(logins={"enabled": True, **section})


def probe_text(state: Any, now: float = 2.0) -> dict[str, list[Any]]:
    """The login metric families a probe of ``state`` renders, by name."""
    found = snapshot(state, now, 0.1, 10.0, pending=False)
    names = {"whm_cphulk_enabled", "whm_login_failures", "whm_user_login_failures"}
    names.add("whm_login_blocks")
    return {f.name: list(f.samples) for f in families(found) if f.name in names}


def keep(state: Any, kind: Kind, body: Any) -> list[WHMError]:
    item = state.logins[kind]
    call = logins.FAMILY.plan(item, state, 0.0)
    assert (call.function, call.subject, dict(call.params)) == (kind.value, "", {})
    state.start(item, 1.0, urgent=False)
    problems = call.keep(body, 1.0) or []
    state.finish(item, True)
    return problems


def test_each_answer_is_served_and_a_malformed_row_is_a_bad_record() -> None:
    state = logins_state(max_users=1)
    assert keep(state, Kind.CPHULK, fixture("cphulk_status.official.json")) == []
    problems = keep(state, Kind.LOGIN_FAILURES, fixture(f"{FAILED}.malformed.json"))
    assert [(p.reason, p.detail.split(":")[0]) for p in problems] == [
        ("protocol", "record refused")
    ] * 2
    for kind in (Kind.USER_BLOCKS, Kind.IP_BLOCKS, Kind.EXCESSIVE_BLOCKS):
        assert keep(state, kind, fixture(f"{kind.value}.real_forms.json")) == []
    assert probe_text(state) == {
        "whm_cphulk_enabled": [((), 1)],
        "whm_login_failures": [(("imap",), 1)],
        "whm_user_login_failures": [(("info@acme001.example", "imap"), 1)],
        "whm_login_blocks": [(("user",), 1), (("ip",), 1), (("excessive_ip",), 1)],
    }


def test_cphulk_off_is_a_zero_and_no_error() -> None:
    state = logins_state()
    assert keep(state, Kind.CPHULK, fixture("cphulk_status.disabled.json")) == []
    for kind in LOGIN_KINDS[1:]:
        assert keep(state, kind, fixture(f"{kind.value}.cphulk_disabled.json")) == []
    assert probe_text(state) == {
        "whm_cphulk_enabled": [((), 0)],
        "whm_login_failures": [],
        "whm_user_login_failures": [],
        "whm_login_blocks": [(("user",), 0), (("ip",), 0), (("excessive_ip",), 0)],
    }


def test_nothing_is_served_of_an_answer_past_max_age_or_refused() -> None:
    state = logins_state(max_age="1m")
    answer(state, state.logins[Kind.CPHULK], True, 1.0)
    fail(state, state.logins[Kind.IP_BLOCKS], 1.0)
    assert probe_text(state, 60.0)["whm_cphulk_enabled"] == [((), 1)]
    assert probe_text(state, 62.0)["whm_cphulk_enabled"] == []
    assert probe_text(state, 62.0)["whm_login_blocks"] == []


def test_logins_go_after_the_settings_and_a_refused_one_waits_its_refresh() -> None:
    state = state_for(
        server_settings={"enabled": True},
        logins={"enabled": True, "refresh": "2m"},
        unique_recipients={"enabled": False},
        mailboxes={"enabled": False},
    )
    refresh = schedule.refresh_of(state.module)
    state.new_epoch(0.0)
    assert order(state, 0.0, refresh) == [
        ("LISTACCTS", "", ""),
        *(("SETTING", "", key) for key in SETTING_KEYS),
        *((kind.name, "", "") for kind in LOGIN_KINDS),
    ]
    for item in list(state.in_flight):
        state.finish(item, False)
    discovered(state, 1.0)
    for at in (2.0, 119.0):
        state.new_epoch(at)
        assert not {k for k, _, _ in order(state, at, refresh)} & {k.name for k in LOGIN_KINDS}
        for item in list(state.in_flight):
            state.finish(item, True)
    state.new_epoch(120.0)
    picked = schedule.next_item(state, 120.0, refresh)
    assert picked is not None
    assert picked[0].kind is Kind.CPHULK
    assert schedule.is_refresh(*picked)


# --- end to end, on the simulator ----------------------------------------------------------------


def by(found: Any, name: str, label: str) -> dict[str, float]:
    return {dict(k)[label]: v for k, v in series(found, name).items()}


async def test_a_brute_forced_address_its_failures_and_blocks(start_whm, start_exporter) -> None:
    ds = Dataset()
    whm: WHM = await start_whm(ds)
    found = await (await start_exporter(only(whm.url, "logins"))).probe()
    brute = ds.brute_forced_address
    assert brute is not None
    assert value(found, "whm_cphulk_enabled") == 1
    rows = ds.login_failures()
    assert by(found, "whm_login_failures", "service") == Counter(s for _, s, _ in rows)
    users = {
        (dict(k)["user"], dict(k)["service"]): v
        for k, v in series(found, "whm_user_login_failures").items()
    }
    assert {s: users[(brute, s)] for s in BRUTE_FAILURES} == BRUTE_FAILURES
    assert sum(users.values()) == len(rows)
    assert by(found, "whm_login_blocks", "kind") == {"user": 1, "ip": 2, "excessive_ip": 1}
    for function in FUNCTIONS:
        assert value(found, "whm_data_items", function=function, state="fresh") == 1
    assert not series(found, "whm_api_errors")
    assert not series(found, "whm_series_dropped")
    # No address a login came from, as a label or a value.
    assert "203.0.113" not in repr(found)


async def test_max_users_keeps_the_most_failed_and_counts_the_rest(
    start_whm, start_exporter
) -> None:
    ds = Dataset()
    whm: WHM = await start_whm(ds)
    found = await (await start_exporter(only(whm.url, "logins", logins={"max_users": 1}))).probe()
    users = {dict(k)["user"] for k in series(found, "whm_user_login_failures")}
    assert users == {ds.brute_forced_address}
    others = {(u, s) for u, s, _ in ds.login_failures() if u != ds.brute_forced_address}
    assert value(found, "whm_series_dropped", metric="whm_user_login_failures") == len(others)


async def test_cphulk_off_serves_a_zero_and_no_error(start_whm, start_exporter) -> None:
    from whm_exporter.simulator.__main__ import build, parse_args

    ds = build(parse_args(["--cphulk-off"])).dataset
    assert (ds.cphulk, ds.brute_force) == (False, True)
    assert not build(parse_args(["--no-brute-force"])).dataset.brute_force
    whm: WHM = await start_whm(ds)
    found = await (await start_exporter(only(whm.url, "logins"))).probe()
    assert value(found, "whm_cphulk_enabled") == 0
    assert not series(found, "whm_login_failures")
    assert not series(found, "whm_user_login_failures")
    assert by(found, "whm_login_blocks", "kind") == {"user": 0, "ip": 0, "excessive_ip": 0}
    assert {f: whm.sim.stats.calls[f] for f in FUNCTIONS} == dict.fromkeys(FUNCTIONS, 1)
    assert not series(found, "whm_api_errors")
    assert value(found, "whm_up") == 1


async def test_a_reseller_refused_costs_one_error_per_function_per_refresh(
    start_whm, start_exporter
) -> None:
    ds = Dataset(accounts=8, users=2, folders=2)
    whm: WHM = await start_whm(ds, faults=dict.fromkeys(FUNCTIONS, "api_denied"))
    running = await start_exporter(module(whm.url))
    first = await running.probe()
    for function in FUNCTIONS:
        assert value(first, "whm_api_errors", function=function, reason="api") == 1, function
    for found in (first, await running.probe(), await running.probe()):
        # The rest of the probe whole, and not held to its deadline by the refused calls.
        assert value(found, "whm_up") == 1
        assert value(found, "whm_probe_deadline_exceeded") == 0
        assert (
            value(found, "whm_data_items", function="get_mailbox_status_list", state="missing") == 0
        )
        assert value(found, "whm_user_mail_sent_messages", user=ds.user_names[0], window="1h")
        assert value(found, "whm_outbound_spam_threshold_recipients") == 500
        for function in FUNCTIONS:
            assert value(found, "whm_data_items", function=function, state="missing") == 1
        assert not series(found, "whm_cphulk_enabled")
        assert not series(found, "whm_login_blocks")
    assert {f: whm.sim.stats.calls[f] for f in FUNCTIONS} == dict.fromkeys(FUNCTIONS, 1)
    for function in FUNCTIONS:
        assert value(found, "whm_api_errors", function=function, reason="api") is None
        assert value(found, "whm_api_call_errors_total", function=function, reason="api") == 1


async def test_the_answers_are_kept_across_a_restart(
    start_whm, start_exporter, tmp_path: Path
) -> None:
    ds = Dataset()
    whm: WHM = await start_whm(ds)
    kept = functools.partial(start_exporter, config_file=True, storage=tmp_path / "state")
    first: Running = await kept(only(whm.url, "logins"))
    before = await first.probe()
    await first.exporter.targets["t"].collection.settled()
    await first.session.close()
    await first.runner.cleanup()
    calls = {f: whm.sim.stats.calls[f] for f in FUNCTIONS}
    again: Running = await kept(only(whm.url, "logins"))
    after = await again.probe()
    names = ("whm_cphulk_enabled", "whm_login_failures", "whm_user_login_failures")
    for name in (*names, "whm_login_blocks"):
        assert series(after, name) == series(before, name), name
        assert series(after, name), name
    # Within the refresh: served from the kept state, not asked again.
    assert {f: whm.sim.stats.calls[f] for f in FUNCTIONS} == calls
    for function in FUNCTIONS:
        assert value(after, "whm_data_items", function=function, state="missing") == 0


def test_the_demo_has_an_address_over_the_alerts_threshold() -> None:
    brute = DEMO.brute_forced_address
    assert brute is not None
    by_user = Counter(u for u, _, _ in DEMO.login_failures())
    # WhmUserLoginFailures: 20 over all services; the others far below.
    assert by_user[brute] >= 20
    assert all(n < 5 for u, n in by_user.items() if u != brute)
    # Without the brute force: the mistyped passwords alone, nothing blocked.
    quiet = Dataset(brute_force=False)
    assert quiet.login_blocks() == ([], [], [])
    assert max(Counter(u for u, _, _ in quiet.login_failures()).values()) == 1
