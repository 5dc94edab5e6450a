"""The whole program with --storage.path, stopped and started again as a user does: SIGTERM
(or Ctrl-C) writes the state, the restart serves every answer at once with its true age and
asks WHM for nothing it already knew; a kill -9 restarts from the last snapshot; a spoiled
file is a logged cold start."""

from __future__ import annotations

import asyncio
import signal
import stat
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import TOKEN, WHM, module, samples, series, value, wait_until
from test_process import Process

from whm_exporter import storage
from whm_exporter.simulator import Dataset

# The exporter in its own process, as test_process.py starts it (its run_exporter fixture).
pytest_plugins = ("test_process",)
DATASET = Dataset(accounts=40, users=8, folders=4)
MAILBOX = "get_mailbox_status_list"
ASKED_AGAIN_NEVER = ("listaccts", "list_pops_for", MAILBOX, "get_tweaksetting")


def every_account() -> set[str]:
    return {
        a for u in DATASET.user_names if not DATASET.suspended(u) for a in (*DATASET.pops[u], u)
    }


def accounts_of(text: str) -> set[str]:
    return {dict(k)["account"] for k in series(samples(text), "whm_mailbox_messages")}


async def sim_calls(whm: WHM) -> dict[str, int]:
    """The simulator's call counts, as /_sim/stats gives them."""
    async with aiohttp.ClientSession() as session, session.get(whm.url + "/_sim/stats") as r:
        calls: dict[str, int] = (await r.json())["calls"]
        return calls


async def collected(start: Any, whm: WHM, directory: Path) -> Process:
    exporter: Process = await start(module(whm.url), f"--storage.path={directory}")

    async def whole() -> bool:
        status, text = await exporter.get("/probe?target=t")
        return status == 200 and accounts_of(text) == every_account()

    await wait_until(whole, "every mailbox collected")
    return exporter


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_restart_serves_every_answer_with_its_true_age(
    start_whm, run_exporter, tmp_path: Path, sig: int
) -> None:
    whm: WHM = await start_whm(DATASET, latency=0.005)
    directory = tmp_path / "state"
    first = await collected(run_exporter, whm, directory)
    code, _, err = await asyncio.to_thread(first.stop, sig)
    down = time.monotonic()
    assert code == 0, err
    [file] = directory.iterdir()
    assert file.name == storage.file_name("t")
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert TOKEN.encode() not in storage.unpack(file.read_bytes())

    before = await sim_calls(whm)
    again: Process = await run_exporter(module(whm.url), f"--storage.path={directory}")
    probed = time.monotonic()
    status, text = await again.get("/probe?target=t")
    assert status == 200
    found = samples(text)
    after = await sim_calls(whm)
    assert accounts_of(text) == every_account()
    assert value(found, "whm_up") == 1
    assert value(found, "whm_data_items", function=MAILBOX, state="missing") == 0
    # The server settings too (issue 25), kept and not asked again.
    assert value(found, "whm_data_items", function="get_tweaksetting", state="missing") == 0
    assert value(found, "whm_outbound_spam_threshold_recipients") == DATASET.spam_threshold
    age = value(found, "whm_data_age_seconds", function=MAILBOX)
    assert age is not None
    assert age >= probed - down
    for function in ASKED_AGAIN_NEVER:
        assert after.get(function, 0) == before.get(function, 0), function
    code, _, err = await asyncio.to_thread(again.stop)
    assert code == 0
    assert "kept state restored" in err


async def test_a_kill_9_restarts_from_the_last_snapshot(
    start_whm, run_exporter, tmp_path: Path
) -> None:
    whm: WHM = await start_whm(DATASET, latency=0.005)
    directory = tmp_path / "state"
    first = await collected(run_exporter, whm, directory)
    assert (await asyncio.to_thread(first.stop))[0] == 0
    snapshot = (directory / storage.file_name("t")).read_bytes()
    # A second life, killed before it wrote anything: the snapshot is the first one's.
    second: Process = await run_exporter(module(whm.url), f"--storage.path={directory}")
    assert (await second.get("/probe?target=t"))[0] == 200
    await asyncio.to_thread(second.stop, signal.SIGKILL)
    assert (directory / storage.file_name("t")).read_bytes() == snapshot
    before = await sim_calls(whm)
    third: Process = await run_exporter(module(whm.url), f"--storage.path={directory}")
    status, text = await third.get("/probe?target=t")
    assert status == 200
    assert accounts_of(text) == every_account()
    after = await sim_calls(whm)
    for function in ASKED_AGAIN_NEVER:
        assert after.get(function, 0) == before.get(function, 0), function
    assert (await asyncio.to_thread(third.stop))[0] == 0


async def test_a_spoiled_file_is_a_logged_cold_start(
    start_whm, run_exporter, tmp_path: Path
) -> None:
    whm: WHM = await start_whm(DATASET)
    directory = tmp_path / "state"
    first = await collected(run_exporter, whm, directory)
    assert (await asyncio.to_thread(first.stop))[0] == 0
    file = directory / storage.file_name("t")
    file.write_bytes(file.read_bytes()[:100])
    again: Process = await run_exporter(module(whm.url), f"--storage.path={directory}")
    status, text = await again.get("/probe?target=t")
    assert status == 200
    assert value(samples(text), "whm_up") == 1
    code, _, err = await asyncio.to_thread(again.stop)
    assert code == 0
    [line] = [line for line in err.splitlines() if "kept state unreadable" in line]
    assert "target=t " in line
    assert "problem=truncated" in line
    assert len(list(directory.glob(f"{file.name}.corrupt-*"))) == 1
    # The cold start wrote its own state at shutdown.
    assert storage.unpack(file.read_bytes())


async def test_the_demo_writes_nothing(run_exporter, tmp_path: Path) -> None:
    # Its simulated server is new at every start: nothing to keep.
    directory = tmp_path / "state"
    exporter: Process = await run_exporter({}, "--demo", f"--storage.path={directory}")
    assert (await exporter.get("/probe?target=demo"))[0] == 200
    code, _, err = await asyncio.to_thread(exporter.stop)
    assert code == 0
    assert "--storage.path is ignored with --demo" in err
    assert not directory.exists()
