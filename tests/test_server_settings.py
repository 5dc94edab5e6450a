"""cPanel's own rules, read from each server (issue 25): its Tweak Settings (get_tweaksetting,
"Return a Tweak Setting value"), each account's caps as listaccts gives them and cPanel
enforces them, and the limit markers of emailtrack_user_stats, from the fixtures of the
official examples and of real servers' forms, through the family and end to end."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from conftest import WHM, fixture, module, series, value
from statekit import answer, discovered, fail, order, state_for

from whm_exporter.collect import schedule
from whm_exporter.collect.state import SETTING_KEYS, Item, Kind, TargetState
from whm_exporter.families import mail_flow, server_settings
from whm_exporter.families.server_settings import (
    ACTION,
    ENABLE,
    MAX_DEFER_FAIL,
    MAX_EMAILS,
    MIN_DEFER_FAIL,
    THRESHOLD,
    UserCaps,
)
from whm_exporter.probe import snapshot
from whm_exporter.simulator import Dataset
from whm_exporter.simulator.dataset import CAP_FORMS, DEMO
from whm_exporter.whm import parse
from whm_exporter.whm.errors import WHMError

TWEAK = "get_tweaksetting"
FLOW = "emailtrack_user_stats"

# --- get_tweaksetting ----------------------------------------------------------------------------


def test_the_official_example_parses() -> None:
    setting = parse.tweak_setting(fixture("get_tweaksetting.official.json"))
    assert setting == parse.TweakSetting("defaultmailaction", "localuser")


def test_an_unset_key_has_no_value_and_means_no_limit() -> None:
    setting = parse.tweak_setting(fixture("get_tweaksetting.unset.json"))
    assert setting == parse.TweakSetting("maxemailsperhour", None)
    assert server_settings.read(setting) is None


def test_an_unknown_key_is_whms_refusal() -> None:
    with pytest.raises(WHMError) as caught:
        parse.tweak_setting(fixture("get_tweaksetting.invalid_key.json"))
    assert (caught.value.reason, caught.value.detail) == ("api", "Invalid tweaksetting key")


@pytest.mark.parametrize(
    ("key", "text", "meant"),
    [
        (ENABLE, "1", True),
        (ENABLE, "0", False),
        (THRESHOLD, "500", 500),
        (THRESHOLD, "1", 1),
        (ACTION, "noaction", "noaction"),
        (ACTION, "hold", "hold"),
        (ACTION, "block", "block"),
        (MAX_EMAILS, "200", 200),
        # 0 is cPanel's "unlimited" for the hourly cap, as unset is.
        (MAX_EMAILS, "0", None),
        (MAX_DEFER_FAIL, "100", 100),
        (MAX_DEFER_FAIL, "0", None),
        (MIN_DEFER_FAIL, "0", 0),
        (MIN_DEFER_FAIL, "5", 5),
    ],
)
def test_each_value_a_key_allows(key: str, text: str, meant: object) -> None:
    assert server_settings.read(parse.TweakSetting(key, text)) == meant


@pytest.mark.parametrize(
    ("key", "text"),
    [
        (ENABLE, "2"),
        (ENABLE, "yes"),
        (THRESHOLD, "0"),
        (THRESHOLD, "2.5"),
        (THRESHOLD, "-5"),
        (THRESHOLD, " 500"),
        (THRESHOLD, "\u0665\u0660\u0660"),
        (ACTION, "quarantine"),
        (ACTION, "Hold"),
        (MAX_EMAILS, "lots"),
        (MAX_DEFER_FAIL, "101"),
        (MIN_DEFER_FAIL, "-1"),
    ],
)
def test_a_value_its_key_does_not_allow_is_an_error_naming_the_key(key: str, text: str) -> None:
    with pytest.raises(WHMError) as caught:
        server_settings.read(parse.TweakSetting(key, text))
    assert caught.value.reason == "protocol"
    assert caught.value.detail.startswith(f"{key}: ")


def test_an_answer_for_another_key_or_a_value_not_text_is_refused() -> None:
    state = settings_state()
    item = state.settings[THRESHOLD]
    call = server_settings.FAMILY.plan(item, state, 0.0)
    assert (call.function, call.subject, dict(call.params)) == (
        TWEAK,
        THRESHOLD,
        {"key": THRESHOLD, "module": "Main"},
    )
    with pytest.raises(WHMError, match=f"^protocol: {THRESHOLD}: answered for"):
        call.keep(tweak(ACTION, "hold"), 1.0)
    with pytest.raises(WHMError, match=f"^protocol: {THRESHOLD}: value is not a string"):
        call.keep(tweak(THRESHOLD, [500]), 1.0)
    assert item.answer is None


def tweak(key: str, value: Any = None) -> dict[str, Any]:
    setting = {"key": key} if value is None else {"key": key, "value": value}
    return {"data": {"tweaksetting": setting}, "metadata": {"result": 1, "reason": "OK"}}


# --- the caps each account gets, as cPanel enforces them -----------------------------------------


def settings_state() -> TargetState:
    return state_for(server_settings={"enabled": True})


def served_caps(listaccts: Any, settings: dict[str, str | None]) -> dict[str, UserCaps]:
    """The caps a probe serves for listaccts' body and the settings answered (the others
    refused)."""
    state = settings_state()
    assert state.listaccts is not None
    answer(state, state.listaccts, {a.user: a for a in parse.accounts(listaccts)}, 1.0)
    for key, item in state.settings.items():
        if key in settings:
            answer(state, item, parse.TweakSetting(key, settings[key]), 1.0)
        else:
            fail(state, item, 1.0)
    part = snapshot(state, 2.0, 0.1, 10.0, pending=False).server_settings
    return {u.user: u for u in part.users}


def test_every_cap_form_maps_as_cpanel_enforces_it() -> None:
    body = fixture("listaccts.caps_real_forms.json")
    caps = served_caps(body, {MAX_EMAILS: "100", MAX_DEFER_FAIL: "30"})
    own = {"own": UserCaps("own", 200, 0.4), "ownstr": UserCaps("ownstr", 300, 0.25)}
    inherit = ("zero", "default", "empty", "unknown", "absent")
    assert caps == {
        **own,
        # "unlimited": no cap, even though the server has one.
        "unlimited": UserCaps("unlimited", None, None),
        **{u: UserCaps(u, 100, 0.3) for u in inherit},
    }
    # The server's settings unset: unlimited, off.
    unset = served_caps(body, {MAX_EMAILS: None, MAX_DEFER_FAIL: None})
    assert unset == {**own, **{u: UserCaps(u, None, None) for u in ("unlimited", *inherit)}}
    # Not readable (a reseller's token): only the accounts' own caps are known.
    unread = served_caps(body, {})
    assert unread == {**own, **{u: UserCaps(u, None, None) for u in ("unlimited", *inherit)}}


def test_the_defer_fail_minimum_is_the_setting_else_listaccts() -> None:
    body = fixture("listaccts.caps_real_forms.json")
    state_min = {MIN_DEFER_FAIL: "7"}
    for settings, minimum in ((state_min, 7), ({MIN_DEFER_FAIL: None}, 5), ({}, 5)):
        state = settings_state()
        assert state.listaccts is not None
        answer(state, state.listaccts, {a.user: a for a in parse.accounts(body)}, 1.0)
        for key, text in settings.items():
            answer(state, state.settings[key], parse.TweakSetting(key, text), 1.0)
        found = snapshot(state, 2.0, 0.1, 10.0, pending=False)
        assert found.server_settings.min_defer_fail == minimum, settings


# --- the limit markers ---------------------------------------------------------------------------


def test_every_marker_form_is_read_and_no_record_refused() -> None:
    answer_ = parse.mail_flow(fixture("emailtrack_user_stats.limit_markers.json"))
    assert answer_.bad_records == ()
    flags = {
        r.user: (
            r.reached_max_emails,
            r.max_emails_marker,
            r.reached_max_defer_fail,
            r.defer_fail_marker,
        )
        for r in answer_.records
    }
    assert flags == {
        "capped": (True, (150, 150), False, None),
        "bouncing": (False, None, True, (7, 5)),
        "reference": (True, None, False, None),
        "quiet": (False, None, False, None),
        # Some other text: reached all the same; an empty one: not.
        "odd": (True, None, False, None),
    }
    assert answer_.odd_markers == (("odd", "'limit reached'"),)
    capped = next(r for r in answer_.records if r.user == "capped")
    assert (capped.sent, capped.delivered, capped.deferrals, capped.sent_bytes) == (
        150,
        140,
        10,
        300000,
    )


@pytest.mark.parametrize(
    ("text", "read"),
    [
        ("150/150", (True, (150, 150), False)),
        ("7/5 (58%)", (True, (7, 5), False)),
        (" 7 / 5 ( 58.3 % ) ", (True, (7, 5), False)),
        ("5/5 (100%)", (True, (5, 5), False)),
        (0, (False, None, False)),
        ("1", (True, None, False)),
        ("", (False, None, False)),
        (None, (False, None, False)),
        ("7/5 (58", (True, None, True)),
        ("\u0667/5", (True, None, True)),
        (True, (True, None, True)),
    ],
)
def test_a_marker_text(text: object, read: tuple[bool, object, bool]) -> None:
    assert parse.limit_marker(text, "x") == read


def test_an_odd_marker_text_is_logged_once_per_target_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = fixture("emailtrack_user_stats.limit_markers.json")
    states = [state_for(mail_flow={"enabled": True}) for _ in range(2)]
    with caplog.at_level(logging.DEBUG, "whm_exporter.collect"):
        for state in (*states, states[0]):
            item = state.mail_flow["1h"]
            mail_flow.FAMILY.plan(item, state, 1e9).keep(body, 1.0)
    lines = [r for r in caplog.records if "limit flag" in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.DEBUG, logging.DEBUG]
    assert (lines[0].__dict__["user"], lines[0].__dict__["text"]) == ("odd", "'limit reached'")


# --- the schedule: a refused key waits its refresh -----------------------------------------------


def test_settings_go_right_after_the_inventory_and_a_refused_one_waits_its_refresh() -> None:
    state = state_for(
        server_settings={"enabled": True, "refresh": "10m"},
        unique_recipients={"enabled": False},
        mailboxes={"enabled": False},
    )
    refresh = schedule.refresh_of(state.module)
    state.new_epoch(0.0)
    # The user list, then the settings (the addresses come with the list).
    assert order(state, 0.0, refresh) == [
        ("LISTACCTS", "", ""),
        *(("SETTING", "", key) for key in SETTING_KEYS),
    ]
    assert state.listaccts is not None
    refused: list[Item[Any]] = [state.listaccts, *state.settings.values()]
    for item in refused:
        state.finish(item, False)
    discovered(state, 1.0)
    threshold = state.settings[THRESHOLD]
    answer(state, threshold, parse.TweakSetting(THRESHOLD, "250"), 1.0)
    # The other five were refused at 0: not at the next probes within the refresh...
    for at in (2.0, 60.0, 599.0):
        state.new_epoch(at)
        assert "SETTING" not in {kind for kind, _, _ in order(state, at, refresh)}, at
        for item in state.in_flight.copy():
            state.finish(item, True)
        assert not schedule.first_answers_pending(state)
        assert schedule.count_eligible(state, at, refresh, 100) == 0
    # ... but once it has passed, as refreshes: within the load budget.
    state.new_epoch(600.0)
    assert schedule.next_item(state, 600.0, refresh, refreshing=False) is None
    picked = schedule.next_item(state, 600.0, refresh)
    assert picked is not None
    again, urgent = picked
    assert (again.kind, again.subject, urgent) == (Kind.SETTING, ENABLE, False)
    assert schedule.is_refresh(again, urgent)
    assert schedule.count_eligible(state, 600.0, refresh, 100) == 5


def test_without_the_patient_switch_a_failed_first_answer_goes_at_every_probe() -> None:
    # The mailboxes' failures are asked again at the next probe, as before.
    state = state_for()
    refresh = schedule.refresh_of(state.module)
    discovered(state, 0.0)
    item = state.mailboxes[("alice", "a1@x")]
    fail(state, item, 1.0)
    state.new_epoch(2.0)
    assert schedule.eligible(item, 2.0, 2.0, refresh)


# --- end to end, on the simulator ----------------------------------------------------------------


def settings_only(url: str, **overrides: Any) -> dict[str, Any]:
    """The settings and the inventory, and what ``overrides`` switches on."""
    sections = {
        "mailboxes": {"enabled": False},
        "unique_recipients": {"enabled": False},
        "mail_flow": {"enabled": False},
    }
    return module(url, **{**sections, **overrides})


async def test_a_server_at_250_with_hold_is_served(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(
        Dataset(spam_threshold=250, spam_action="hold", max_emails_per_hour=100)
    )
    found = await (await start_exporter(module(whm.url))).probe()
    assert value(found, "whm_outbound_spam_detection_enabled") == 1
    assert value(found, "whm_outbound_spam_threshold_recipients") == 250
    assert {dict(k)["action"]: v for k, v in series(found, "whm_outbound_spam_action").items()} == {
        "noaction": 0,
        "hold": 1,
        "block": 0,
    }
    assert value(found, "whm_defer_fail_min_messages") == 5
    assert value(found, "whm_data_items", function=TWEAK, state="fresh") == 6
    assert not series(found, "whm_api_errors")


async def test_detection_off_and_the_flags_of_the_simulator(start_whm, start_exporter) -> None:
    from whm_exporter.simulator.__main__ import build, parse_args

    sim = build(
        parse_args(
            [
                "--spam-detection-off",
                *("--spam-threshold", "300", "--spam-action", "block"),
                *("--max-emails-per-hour", "50", "--max-defer-fail-percentage", "40"),
                "--between-sender",
            ]
        )
    )
    ds = sim.dataset
    assert (ds.spam_detection, ds.spam_threshold, ds.spam_action) == (False, 300, "block")
    assert (ds.max_emails_per_hour, ds.max_defer_fail_percentage, ds.between_sender) == (
        50,
        40,
        True,
    )
    whm: WHM = await start_whm(ds)
    found = await (await start_exporter(settings_only(whm.url))).probe()
    assert value(found, "whm_outbound_spam_detection_enabled") == 0
    assert value(found, "whm_outbound_spam_action", action="block") == 1


async def test_the_caps_of_every_form_from_the_simulator(start_whm, start_exporter) -> None:
    ds = Dataset(accounts=len(CAP_FORMS) * 2, users=len(CAP_FORMS), max_emails_per_hour=100)
    whm: WHM = await start_whm(ds)
    found = await (await start_exporter(module(whm.url))).probe()
    hourly = {
        dict(k)["user"]: v for k, v in series(found, "whm_user_hourly_email_limit_messages").items()
    }
    ratio = {
        dict(k)["user"]: v for k, v in series(found, "whm_user_defer_fail_limit_ratio").items()
    }
    expected_hourly, expected_ratio = {}, {}
    for user in ds.user_names:
        if ds.suspended(user):
            continue
        cap, percentage = ds.caps(user)
        if cap is not None:
            expected_hourly[user] = cap
        if percentage is not None:
            expected_ratio[user] = percentage / 100
    assert hourly == expected_hourly
    assert ratio == expected_ratio
    forms = {ds.cap_form(u) for u in ds.user_names}
    assert forms == set(CAP_FORMS)
    # The heavy sender's user is past its own cap: its marker, with its numbers.
    heavy = ds.heavy_user
    assert heavy is not None
    assert value(found, "whm_user_mail_limit_reached", user=heavy, limit="max_emails_per_hour") == 1
    assert (
        value(found, "whm_user_mail_limit_marker_messages", user=heavy, limit="max_emails_per_hour")
        == 2000
    )
    assert (
        value(
            found,
            "whm_user_mail_limit_marker_threshold_messages",
            user=heavy,
            limit="max_defer_fail",
        )
        == ds.min_defer_fail
    )


async def test_markers_keep_the_users_whole_mail_flow(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(canned={FLOW: fixture("emailtrack_user_stats.limit_markers.json")})
    document = settings_only(
        whm.url,
        discovery={"enabled": False},
        mail_flow={"enabled": True},
        users={"capped": [], "bouncing": [], "odd": []},
    )
    found = await (await start_exporter(document)).probe()
    for user, sent, limit, numbers in (
        ("capped", 150, "max_emails_per_hour", (150, 150)),
        ("bouncing", 12, "max_defer_fail", (7, 5)),
    ):
        labels = {"user": user, "window": "1h"}
        assert value(found, "whm_user_mail_sent_messages", **labels) == sent
        assert value(found, "whm_user_mail_limit_reached", user=user, limit=limit) == 1
        marker = (
            value(found, "whm_user_mail_limit_marker_messages", user=user, limit=limit),
            value(found, "whm_user_mail_limit_marker_threshold_messages", user=user, limit=limit),
        )
        assert marker == numbers
    assert value(found, "whm_user_mail_deferrals", user="bouncing", window="1h") == 4
    assert value(found, "whm_user_mail_failures", user="bouncing", window="1h") == 3
    assert value(found, "whm_user_mail_limit_reached", user="odd", limit="max_emails_per_hour") == 1
    assert (
        value(found, "whm_user_mail_limit_marker_messages", user="odd", limit="max_emails_per_hour")
        is None
    )
    assert not series(found, "whm_api_errors")


async def test_a_reseller_refused_costs_one_call_per_key_per_refresh(
    start_whm, start_exporter
) -> None:
    ds = Dataset(accounts=8, users=2, folders=2)
    whm: WHM = await start_whm(ds, faults={TWEAK: "api_denied"})
    running = await start_exporter(module(whm.url))
    first = await running.probe()
    assert whm.sim.stats.calls[TWEAK] == len(SETTING_KEYS)
    assert value(first, "whm_api_errors", function=TWEAK, reason="api") == len(SETTING_KEYS)
    for found in (first, await running.probe(), await running.probe()):
        # The rest of the probe whole, and not held to its deadline by the refused keys.
        assert value(found, "whm_up") == 1
        assert value(found, "whm_probe_deadline_exceeded") == 0
        assert (
            value(found, "whm_data_items", function="get_mailbox_status_list", state="missing") == 0
        )
        assert value(found, "whm_user_mail_sent_messages", user=ds.user_names[0], window="1h")
        assert value(found, "whm_data_items", function=TWEAK, state="missing") == len(SETTING_KEYS)
        assert not series(found, "whm_outbound_spam_threshold_recipients")
    assert whm.sim.stats.calls[TWEAK] == len(SETTING_KEYS)
    assert value(found, "whm_api_errors", function=TWEAK, reason="api") is None
    assert value(found, "whm_api_call_errors_total", function=TWEAK, reason="api") == len(
        SETTING_KEYS
    )


def test_the_demo_server_has_a_lowered_threshold_a_capped_user_and_a_sender_between() -> None:
    settings = DEMO.tweak_settings()
    assert (settings[THRESHOLD], settings[ACTION]) == ("250", "hold")
    heavy = DEMO.heavy_user
    assert heavy is not None
    emails, defer_fail = DEMO.marker_texts(heavy)
    assert (emails, defer_fail) == ("2000/1500", "550/5 (28%)")
    passed = [u for u in DEMO.user_names if DEMO.marker_texts(u) != (0, 0)]
    assert passed == [heavy]
    between = DEMO.between_address
    assert between is not None
    owner = DEMO.owner(between)
    assert owner is not None
    assert 250 < DEMO.senders(owner, 3600)[between] < 500
