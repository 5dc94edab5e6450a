"""Hostile and broken WHM answers, each sent for real by the simulator on loopback. For every
one: the probe answers 200 within its deadline, the affected calls are one whm_api_errors reason,
every other account still reports, at most one warning per function and reason is logged per
probe (nothing louder), and the exporter keeps serving."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time

import pytest
from conftest import WHM, module, require_tool, samples, series, value

from whm_exporter.simulator import Dataset
from whm_exporter.simulator.faults import WEIRD_NAMES

DATASET = Dataset(accounts=12, users=3, folders=3)
USER = DATASET.user_names[0]
BROKEN = DATASET.pops[USER][:2]
CASES = [
    ("http401", "auth"),
    ("auth", "auth"),
    ("http500", "http"),
    ("http502", "http"),
    ("html200", "protocol"),
    ("empty", "protocol"),
    ("garbage", "protocol"),
    ("list_body", "protocol"),
    ("no_data", "protocol"),
    ("api_error", "api"),
    ("api_denied", "api"),
    ("api_no_reason", "api"),
    ("api_hostile_reason", "api"),
    ("float_messages", "protocol"),
    ("negative", "protocol"),
    ("huge", "protocol"),
    ("nonnumeric", "protocol"),
    ("long_digits", "protocol"),
    ("infinite_result", "protocol"),
    ("overflow_result", "protocol"),
    ("fractional_result", "protocol"),
    ("deep_nesting", "protocol"),
    ("duplicate_folders", "protocol"),
    ("huge_body", "protocol"),
    ("huge_chunked", "protocol"),
    ("stall_body", "timeout"),
    ("dribble", "timeout"),
    ("reset", "connect"),
    ("slow", "timeout"),
]


@pytest.mark.parametrize(("fault", "reason"), CASES)
async def test_hostile_answer_is_one_error_reason_and_nothing_else(
    start_whm, start_exporter, caplog: pytest.LogCaptureFixture, fault: str, reason: str
) -> None:
    whm: WHM = await start_whm(DATASET, faults=dict.fromkeys(BROKEN, fault))
    running = await start_exporter(
        module(whm.url, request_timeout="400ms", timeout="3s", max_response_bytes=65536)
    )
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    status, text = await running.get("/probe?target=t")
    elapsed = time.monotonic() - started
    assert status == 200
    assert elapsed < 3.5
    found = samples(text)
    assert value(found, "whm_probe_deadline_exceeded") == 0
    errors = series(found, "whm_api_errors")
    assert errors == {
        frozenset({("function", "get_mailbox_status_list"), ("reason", reason)}): len(BROKEN)
    }
    accounts = {dict(k)["account"] for k in series(found, "whm_mailbox_messages")}
    everyone = {a for u in DATASET.user_names for a in (*DATASET.pops[u], u)}
    assert accounts == everyone - set(BROKEN)
    loud = [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith("whm_exporter")
    ]
    assert len(loud) == 1, [r.getMessage() for r in loud]
    assert loud[0].levelno == logging.WARNING
    assert (await running.get("/-/healthy"))[0] == 200
    assert (await running.get("/probe?target=t"))[0] == 200


async def test_nesting_deep_enough_to_crash_a_recursive_decoder_is_one_error(
    start_whm, start_exporter
) -> None:
    # 400 kB, under the cap: the decoder itself must refuse it (orjson < 3.9.15 crashed).
    whm: WHM = await start_whm(DATASET, faults={BROKEN[0]: "deeper_nesting"})
    running = await start_exporter(module(whm.url, max_response_bytes=2**20))
    found = samples((await running.get("/probe?target=t"))[1])
    errors = series(found, "whm_api_errors")
    assert errors == {
        frozenset({("function", "get_mailbox_status_list"), ("reason", "protocol")}): 1
    }
    assert (await running.get("/-/healthy"))[0] == 200


async def test_strange_names_stay_valid_exposition(start_whm, start_exporter) -> None:
    senders = f"get_unique_recipient_count_per_sender_for_user:{USER}"
    whm: WHM = await start_whm(DATASET, faults={BROKEN[0]: "weird_names", senders: "weird_names"})
    running = await start_exporter(module(whm.url))
    status, text = await running.get("/probe?target=t")
    assert status == 200
    found = samples(text)
    folders = {
        dict(k)["mailbox"]
        for k in series(found, "whm_mailbox_messages")
        if dict(k)["account"] == BROKEN[0]
    }
    assert folders == set(WEIRD_NAMES)
    sent = {
        dict(k)["sender"]
        for k in series(found, "whm_sender_unique_recipients")
        if dict(k)["user"] == USER
    }
    assert 'say "hi"@x.example' in sent
    assert "two\nlines@x.example" in sent
    assert not series(found, "whm_api_errors")
    promtool = require_tool("promtool")
    checked = await asyncio.to_thread(
        subprocess.run, [promtool, "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_probe_keeps_its_deadline_when_every_call_stalls(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(
        DATASET, faults={"get_mailbox_status_list": "stall_body", "listaccts": "dribble"}
    )
    running = await start_exporter(module(whm.url, request_timeout="1m", timeout="1500ms"))
    started = time.monotonic()
    status, text = await running.get("/probe?target=t")
    assert status == 200
    assert time.monotonic() - started < 2.5
    assert value(samples(text), "whm_probe_deadline_exceeded") == 1
