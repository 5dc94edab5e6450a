"""The simulator's own realism: cores shared by the calls in service, a slow-down from a chosen
moment, the WHM time it spent, and the spam and quota scenarios the alerts need. The load model
is checked exactly with a fake clock; the rest through the real simulator on loopback."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from conftest import TOKEN, WHM

from whm_exporter.simulator import Dataset, Knobs
from whm_exporter.simulator.__main__ import build, parse_args
from whm_exporter.simulator.dataset import DEMO, FILL_SECONDS, JUMPER_RATES
from whm_exporter.simulator.load import Job, Server, Sharing

NORMAL = (0.0, 1.0)
HOUR = 3600
SENDERS = "get_unique_recipient_count_per_sender_for_user"
TOTALS = "get_unique_sender_recipient_count_per_user"
# The demo's size with every scenario on.
SCENARIOS = replace(DEMO, folders=4, jump_after=HOUR)


async def call(whm: WHM, function: str, **params: str | int) -> Any:
    """One WHM API 1 call to the simulator; the JSON body."""
    query = {"api.version": "1", **{k: str(v) for k, v in params.items()}}
    headers = {"Authorization": f"whm root:{TOKEN}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{whm.url}/json-api/{function}", params=query, headers=headers) as resp,
    ):
        assert resp.status == 200
        return await resp.json()


async def stats(whm: WHM) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{whm.url}/_sim/stats") as resp:
        return await resp.json()  # type: ignore[no-any-return]


async def post(whm: WHM, path: str, **params: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{whm.url}{path}", params=params) as resp,
    ):
        return resp.status, await resp.json() if resp.status == 200 else await resp.text()


def window(
    seconds: int = HOUR, names: tuple[str, str] = ("start_time", "end_time")
) -> dict[str, int]:
    end = int(time.time())
    return {names[0]: end - seconds, names[1]: end}


async def senders_of(whm: WHM, user: str) -> dict[str, int]:
    body = await call(whm, SENDERS, user=user, **window())
    return {row["sender"]: row["unique_recipient_count"] for row in body["data"]["payload"]}


async def totals(whm: WHM) -> dict[str, int]:
    body = await call(whm, TOTALS, **window())
    return {row["user"]: row["unique_sender_recipient_count"] for row in body["data"]["payload"]}


async def mail_flow(whm: WHM) -> dict[str, dict[str, Any]]:
    body = await call(whm, "emailtrack_user_stats", **window(names=("starttime", "endtime")))
    return {record["USER"]: record for record in body["data"]["records"]}


# --- the load model, with a fake clock ----------------------------------------------------------


def test_calls_within_the_cores_run_at_full_speed_and_past_them_share() -> None:
    model = Sharing(0.0)
    first, second, third = Job(1.0), Job(2.0), Job(3.0)
    for job in (first, second):
        assert model.add(job, 0.0, 2, NORMAL) == []
    # Two calls on two cores: each at full speed.
    assert model.next_event(2, NORMAL) == pytest.approx(1.0)
    # A third arrives at 0.5: each gets 2/3 of a core from then on.
    assert model.add(third, 0.5, 2, NORMAL) == []
    assert model.next_event(2, NORMAL) == pytest.approx(0.5 + 0.5 / (2 / 3))
    assert model.advance(1.24, 2, NORMAL) == []
    assert model.advance(1.26, 2, NORMAL) == [first]
    # Two left on two cores: full speed again (second: 2 - 0.5 - 0.5 = 1 left at 1.25).
    assert model.next_event(2, NORMAL) == pytest.approx(2.25)
    assert model.advance(10.0, 2, NORMAL) == [second, third]
    # Work served is the demand, however it was shared.
    assert model.work == pytest.approx(6.0)


def test_no_core_limit_serves_each_call_alone() -> None:
    model = Sharing(0.0)
    jobs = [Job(1.0) for _ in range(8)]
    for job in jobs:
        model.add(job, 0.0, 0, NORMAL)
    assert model.advance(0.99, 0, NORMAL) == []
    assert model.advance(1.01, 0, NORMAL) == jobs


def test_a_late_clock_reading_walks_the_events_in_order() -> None:
    # Read once, long after everything ended: each call still ended at its own moment, so the
    # work served is exact (one core: 1 + 2 + 3 core-seconds, no more).
    model = Sharing(0.0)
    jobs = [Job(d) for d in (3.0, 1.0, 2.0)]
    for job in jobs:
        model.add(job, 0.0, 1, NORMAL)
    assert model.advance(100.0, 1, NORMAL) == [jobs[1], jobs[2], jobs[0]]
    assert model.work == pytest.approx(6.0)


def test_a_slow_down_multiplies_the_work_left_from_its_moment() -> None:
    model = Sharing(0.0)
    job = Job(2.0)
    slow = (1.0, 4.0)
    model.add(job, 0.0, 0, slow)
    # Half done at 1 s, the other second of work at a quarter speed.
    assert model.next_event(0, slow) == pytest.approx(1.0)
    assert model.advance(4.9, 0, slow) == []
    assert model.advance(5.1, 0, slow) == [job]
    assert model.work == pytest.approx(5.0)  # core-seconds spent: 1 + 4


def test_a_call_that_leaves_gives_the_others_its_share() -> None:
    model = Sharing(0.0)
    stays, leaves = Job(1.0), Job(1.0)
    model.add(stays, 0.0, 1, NORMAL)
    model.add(leaves, 0.0, 1, NORMAL)
    assert model.remove(leaves, 1.0, 1, NORMAL) == []  # half of each served
    assert model.next_event(1, NORMAL) == pytest.approx(1.5)


# --- load, on loopback ---------------------------------------------------------------------------


async def load_of(whm: WHM, in_flight: int) -> float:
    """busy / work for ``in_flight`` calls made at once: 1 when none waits for a core."""
    before = await stats(whm)
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": f"whm root:{TOKEN}"}

        async def one() -> None:
            url = f"{whm.url}/json-api/listaccts?api.version=1"
            async with session.get(url, headers=headers) as resp:
                assert resp.status == 200

        await asyncio.gather(*(one() for _ in range(in_flight)))
    after = await stats(whm)
    assert after["total"] - before["total"] == in_flight
    busy = after["busy_seconds"] - before["busy_seconds"]
    work = after["work_seconds"] - before["work_seconds"]
    assert work == pytest.approx(in_flight * 0.25)  # spread 0: each call's demand is the latency
    return busy / work  # type: ignore[no-any-return]


async def test_cores_slow_calls_only_past_the_core_count(start_whm) -> None:
    whm: WHM = await start_whm(latency=0.25, cores=2)
    # Two calls on two cores answer in their own time; eight share two cores: four times as
    # long each (the margins allow for a busy machine).
    assert await load_of(whm, 2) < 1.5
    assert await load_of(whm, 8) > 3.0


async def test_without_a_core_limit_eight_calls_take_their_own_time(start_whm) -> None:
    whm: WHM = await start_whm(latency=0.25)
    assert await load_of(whm, 8) < 1.5


async def test_a_slow_down_multiplies_call_durations_until_it_ends(start_whm) -> None:
    whm: WHM = await start_whm(latency=0.1)
    normal = await load_of_one(whm)
    status, body = await post(whm, "/_sim/slowdown", factor="4")
    assert (status, body) == (200, {"slowdown": 4.0})
    assert (await stats(whm))["slowdown"] == 4.0
    slowed = await load_of_one(whm)
    assert 2.5 < slowed / normal < 6
    await post(whm, "/_sim/slowdown", factor="1")
    assert (await stats(whm))["slowdown"] == 1.0
    assert await load_of_one(whm) < 2 * normal


async def load_of_one(whm: WHM) -> float:
    before = (await stats(whm))["busy_seconds"]
    await call(whm, "listaccts")
    return (await stats(whm))["busy_seconds"] - before  # type: ignore[no-any-return]


@pytest.mark.parametrize("factor", ["0", "-2", "inf", "nan", "fast", ""])
async def test_a_slow_down_factor_must_be_positive(start_whm, factor: str) -> None:
    whm: WHM = await start_whm()
    status, text = await post(whm, "/_sim/slowdown", factor=factor)
    assert status == 400
    assert "positive" in text
    assert (await stats(whm))["slowdown"] == 1.0


async def test_a_slow_down_at_a_chosen_moment_waits_for_it(start_whm) -> None:
    whm: WHM = await start_whm()
    whm.sim.slow_down(3.0, time.monotonic() + 3600)
    assert (await stats(whm))["slowdown"] == 1.0
    whm.sim.slow_down(3.0, time.monotonic())
    assert (await stats(whm))["slowdown"] == 3.0


async def test_stats_add_up(start_whm) -> None:
    whm: WHM = await start_whm(latency=0.02)
    first = await stats(whm)
    assert set(first) >= {"calls", "total", "in_flight", "max_in_flight"}
    assert (first["busy_seconds"], first["work_seconds"]) == (0, 0)
    for _ in range(3):
        await call(whm, "listaccts")
    await call(whm, "list_pops_for", user=Dataset().user_names[0])
    after = await stats(whm)
    assert after["calls"] == {"listaccts": 3, "list_pops_for": 1}
    assert after["total"] == 4
    assert after["in_flight"] == 0
    assert after["work_seconds"] == pytest.approx(4 * 0.02)
    # Each answer took its work and a little more (the HTTP and JSON around it).
    assert after["work_seconds"] <= after["busy_seconds"] < after["work_seconds"] + 4 * 0.5
    assert after["uptime_seconds"] > first["uptime_seconds"] >= 0
    assert after["slowdown"] == 1.0


async def test_a_cancelled_call_leaves_the_cores_to_the_others() -> None:
    server = Server(Knobs(cores=1))
    stays = asyncio.create_task(server.serve(0.2))
    leaves = asyncio.create_task(server.serve(0.2))
    await asyncio.sleep(0)  # both in service
    leaves.cancel()
    await stays
    # Had the cancelled call kept its share, the core would have served 0.4 s by now.
    assert server.work_seconds() == pytest.approx(0.2, abs=0.05)
    assert leaves.cancelled()


def test_flags_set_the_knobs_and_the_scenarios() -> None:
    sim = build(
        parse_args(
            [
                *("--cores", "4", "--slow-down", "2.5", "--slow-down-after", "60"),
                *("--nobody-sends", "--suspended-sends", "--jump-after", "600"),
                "--filling-mailbox",
            ]
        )
    )
    assert sim.knobs.cores == 4
    start, factor = sim.knobs.slowdown
    assert factor == 2.5
    assert 59 < start - time.monotonic() <= 60
    ds = sim.dataset
    assert (ds.nobody_sends, ds.suspended_sends, ds.jump_after, ds.filling_mailbox) == (
        True,
        True,
        600,
        True,
    )
    default = build(parse_args([]))
    assert (default.knobs.cores, default.knobs.slowdown[1]) == (0, 1.0)
    assert default.dataset == Dataset(users=5)


@pytest.mark.parametrize("flags", [["--cores", "-1"], ["--slow-down", "0"]])
def test_flags_refuse_impossible_load(flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(flags)
    assert flags[0] in capsys.readouterr().err


# --- the scenarios -------------------------------------------------------------------------------


def test_every_scenario_is_off_by_default() -> None:
    ds = Dataset(accounts=200, users=40)
    assert ds.mail_users == ds.user_names
    assert (ds.nobody_user, ds.nobody_senders, ds.suspended_sender_user) == (None, (), None)
    assert (ds.jumper_address, ds.filling_address) == (None, None)
    assert [u for u in ds.user_names if ds.suspended(u)] == [
        ds.user_names[9],
        ds.user_names[19],
        ds.user_names[29],
        ds.user_names[39],
    ]


def test_each_scenario_has_a_user_of_its_own() -> None:
    ds = SCENARIOS
    users = [
        ds.heavy_user,
        ds.jumper_user,
        ds.owner(ds.filling_address or ""),
        ds.suspended_sender_user,
    ]
    assert None not in users
    assert len(set(users)) == len(users)
    # The near-quota address's user (the second) too.
    assert ds.user_names[1] not in users


async def test_nobody_sends_but_is_not_listed(start_whm) -> None:
    whm: WHM = await start_whm(SCENARIOS)
    listed = await call(whm, "listaccts")
    assert "nobody" not in {a["user"] for a in listed["data"]["acct"]}
    assert SCENARIOS.nobody_user == "nobody"
    senders = await senders_of(whm, "nobody")
    assert set(senders) == set(SCENARIOS.nobody_senders)
    assert "nobody@server.example" in senders
    # Above the exporter's priority threshold: the system user is hot.
    assert (await totals(whm))["nobody"] == sum(senders.values()) >= 100
    flow = (await mail_flow(whm))["nobody"]
    expected = SCENARIOS.mail_flow("nobody", HOUR)
    assert flow["SENDCOUNT"] == expected.sent > 0
    assert (flow["REACHED_MAXEMAILS"], flow["REACHED_MAXDEFERFAIL"]) == (0, 0)
    # WHM knows no such cPanel user for the per-account calls.
    pops = await call(whm, "list_pops_for", user="nobody")
    assert pops["metadata"]["result"] == 0
    assert "The “nobody” user does not exist." in pops["metadata"]["reason"]


async def test_without_the_scenario_nobody_sends_nothing(start_whm) -> None:
    whm: WHM = await start_whm(Dataset(accounts=24, users=6))
    assert "nobody" not in await totals(whm)
    assert "nobody" not in await mail_flow(whm)
    assert await senders_of(whm, "nobody") == {}


async def test_a_suspended_user_still_sends(start_whm) -> None:
    whm: WHM = await start_whm(SCENARIOS)
    user = SCENARIOS.suspended_sender_user
    address = SCENARIOS.suspended_sender_address
    assert user is not None
    assert address is not None
    listed = {a["user"]: a for a in (await call(whm, "listaccts"))["data"]["acct"]}
    assert listed[user]["suspended"] == 1
    senders = await senders_of(whm, user)
    assert 100 <= senders[address] < 500
    assert (await totals(whm))[user] >= senders[address]
    assert (await mail_flow(whm))[user]["SENDCOUNT"] == SCENARIOS.mail_flow(user, HOUR).sent > 0


async def test_the_jumper_goes_from_its_usual_level_to_200_at_its_moment(start_whm) -> None:
    whm: WHM = await start_whm(SCENARIOS)  # it jumps an hour after the start
    address, user = SCENARIOS.jumper_address, SCENARIOS.jumper_user
    assert address is not None
    assert user is not None
    usual, jumped = JUMPER_RATES
    assert (await senders_of(whm, user))[address] == usual == 20
    assert (await mail_flow(whm))[user]["SENDCOUNT"] == SCENARIOS.mail_flow(user, HOUR).sent
    whm.sim.started -= HOUR  # the simulator has run an hour
    # (200, not 300 as before issue 25: under the demo's lowered spam threshold, 250, too.)
    assert (await senders_of(whm, user))[address] == jumped == 200
    # Far above its usual level, under cPanel's threshold, and its user trips no limit.
    assert (await totals(whm))[user] < 250
    flow = (await mail_flow(whm))[user]
    assert flow["SENDCOUNT"] == SCENARIOS.mail_flow(user, HOUR, uptime=HOUR).sent
    assert flow["SENDCOUNT"] > SCENARIOS.mail_flow(user, HOUR).sent
    assert (flow["REACHED_MAXEMAILS"], flow["REACHED_MAXDEFERFAIL"]) == (0, 0)


async def test_the_jumper_jumps_when_told(start_whm) -> None:
    whm: WHM = await start_whm(Dataset(accounts=24, users=6))
    status, body = await post(whm, "/_sim/jump")
    assert status == 200
    address, user = body["address"], body["user"]
    assert address == whm.sim.dataset.jumper_address
    assert (await senders_of(whm, user))[address] == JUMPER_RATES[1]


async def test_the_filling_address_fills_its_quota_in_about_two_days(start_whm) -> None:
    whm: WHM = await start_whm(SCENARIOS)
    address = SCENARIOS.filling_address
    assert address is not None
    user = SCENARIOS.owner(address)
    assert user is not None

    async def disk() -> tuple[int, int]:
        body = await call(
            whm,
            "uapi_cpanel",
            **{
                "cpanel.user": user,
                "cpanel.module": "Email",
                "cpanel.function": "list_pops_with_disk",
            },
        )
        (row,) = [r for r in body["data"]["uapi"]["data"] if r["email"] == address]
        return row["_diskused"], row["_diskquota"]

    async def folders() -> int:
        body = await call(whm, "get_mailbox_status_list", account=address)
        return sum(f["vsize"] for f in body["data"]["mailboxes"])

    used, quota = await disk()
    assert 0 < used < quota
    assert quota % 2**20 == 0  # whole MiB, as cPanel sets quotas
    # The disk use is its folders' (read between two readings: it grows all the while).
    assert used <= await folders() <= (await disk())[0]
    whm.sim.started -= 6 * HOUR
    later, _ = await disk()
    assert later <= await folders() <= (await disk())[0]
    # What predict_linear sees from these two readings: full about two days after the start.
    per_second = (later - used) / (6 * HOUR)
    assert per_second * 300 > 100_000  # growth a demo shows within minutes
    assert (quota - used) / per_second == pytest.approx(2 * 86400, rel=0.01)


def test_the_filling_address_grows_steadily_then_stays_full() -> None:
    address = SCENARIOS.filling_address
    assert address is not None
    used = [SCENARIOS.disk(address, t)[0] for t in (0, FILL_SECONDS / 4, FILL_SECONDS / 2)]
    quota = SCENARIOS.disk(address, 0)[1]
    assert used[1] - used[0] == pytest.approx(used[2] - used[1], abs=1)
    assert SCENARIOS.disk(address, FILL_SECONDS) == (quota, quota)
    assert SCENARIOS.disk(address, 10 * FILL_SECONDS) == (quota, quota)
    inbox = SCENARIOS.mailbox(address, FILL_SECONDS)[0]
    assert inbox.messages > SCENARIOS.mailbox(address)[0].messages
    # Every other address stands still.
    other = SCENARIOS.pops[SCENARIOS.user_names[3]][1]
    assert SCENARIOS.disk(other, FILL_SECONDS) == SCENARIOS.disk(other, 0)
