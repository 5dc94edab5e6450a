"""Collection across scrapes against the simulator on loopback: state that outlives a probe,
work that goes on between probes and stops when they stop, the joiner's own deadline, the way
from a spammer's first mail to its first report, and calls that no deadline cuts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import TOKEN, WHM, Running, module, series, value, wait_until

from whm_exporter.config import load_config
from whm_exporter.exporter import Exporter
from whm_exporter.metrics import ExporterMetrics
from whm_exporter.simulator import Dataset
from whm_exporter.target import Target
from whm_exporter.whm.client import Params, WHMClient

# 16 users (the tenth suspended), 64 addresses: 15 users x (4 or 5 addresses + main) to scrape.
DATASET = Dataset(accounts=64, users=16, folders=3)
SCRAPE = "X-Prometheus-Scrape-Timeout-Seconds"
MAILBOX = "get_mailbox_status_list"
SENDERS = "get_unique_recipient_count_per_sender_for_user"


def accounts_of(found: Any) -> set[str]:
    return {dict(k)["account"] for k in series(found, "whm_mailbox_messages")}


def every_account() -> set[str]:
    return {
        a for u in DATASET.user_names if not DATASET.suspended(u) for a in (*DATASET.pops[u], u)
    }


def hot_users(threshold: int = 100) -> set[str]:
    """Users scraped whose total reaches priority_threshold (the heavy sender's among them)."""
    return {
        u
        for u in DATASET.user_names
        if not DATASET.suspended(u) and DATASET.user_total(u, 3600) >= threshold
    }


def target_of(running: Running) -> Target:
    return running.exporter.targets["t"]


async def test_the_collection_goes_on_after_the_probe_and_the_next_serves_everything(
    start_whm, start_exporter
) -> None:
    whm: WHM = await start_whm(DATASET, latency=0.02)
    running = await start_exporter(module(whm.url, max_concurrency=2))
    # 0.6 s of scrape timeout, 0.1 s to probe: far too short for ~100 calls two at a time.
    first = await running.probe(**{SCRAPE: "0.6"})
    assert value(first, "whm_probe_deadline_exceeded") == 1
    assert accounts_of(first) < every_account()
    await target_of(running).collection.settled()
    second = await running.probe(**{SCRAPE: "0.6"})
    assert accounts_of(second) == every_account()
    assert value(second, "whm_discovery_complete") == 1
    # Nothing missing; what the collection fetched after the first probe is fresh, what the
    # first probe served is kept.
    assert value(second, "whm_data_items", function=MAILBOX, state="missing") == 0
    fresh = value(second, "whm_data_items", function=MAILBOX, state="fresh")
    kept = value(second, "whm_data_items", function=MAILBOX, state="kept")
    assert fresh == len(every_account()) - len(accounts_of(first))
    assert kept == len(accounts_of(first))
    # Calls made between the probes are reported by the next probe, none was abandoned.
    calls = value(second, "whm_api_calls", function=MAILBOX) or 0
    assert calls + (value(first, "whm_api_calls", function=MAILBOX) or 0) == len(every_account())
    assert not any(series(second, "whm_api_calls_abandoned").values())


async def test_a_server_that_fits_is_answered_whole_in_one_probe(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET, latency=0.005)
    running = await start_exporter(module(whm.url))
    found = await running.probe(**{SCRAPE: "10"})
    assert value(found, "whm_probe_deadline_exceeded") == 0
    assert accounts_of(found) == every_account()
    assert not target_of(running).collection.pending()


async def test_answers_younger_than_refresh_are_served_not_asked_again(
    start_whm, start_exporter
) -> None:
    whm: WHM = await start_whm(DATASET)
    running = await start_exporter(module(whm.url))  # mailboxes: refresh 1m, senders 0s
    first = await running.probe()
    before = dict(whm.sim.stats.calls)
    second = await running.probe()
    assert whm.sim.stats.calls[MAILBOX] == before[MAILBOX]
    # The senders are asked again, but for those of quiet users whose per-user total has not
    # changed (the simulator's do not): the totals vouch for them (next test).
    assert whm.sim.stats.calls[SENDERS] == before[SENDERS] + len(hot_users())
    assert series(second, "whm_mailbox_messages") == series(first, "whm_mailbox_messages")
    assert value(second, "whm_data_items", function=MAILBOX, state="kept") == len(every_account())
    assert value(second, "whm_data_items", function=SENDERS, state="fresh") == 15
    assert (value(second, "whm_data_age_seconds", function=MAILBOX) or 0) > 0
    assert value(second, "whm_api_calls", function=MAILBOX) is None


async def test_a_failed_refresh_keeps_serving_the_last_answer(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET)
    running = await start_exporter(module(whm.url, mailboxes={"refresh": "0s"}))
    first = await running.probe()
    broken = DATASET.pops[DATASET.user_names[0]][1]
    whm.sim.knobs.faults[broken] = "http500"
    second = await running.probe()
    assert value(second, "whm_api_errors", function=MAILBOX, reason="http") == 1
    assert accounts_of(second) == accounts_of(first)
    assert value(second, "whm_data_items", function=MAILBOX, state="kept") == 1


async def test_discovery_progress_is_kept_across_deadlines(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET, latency=0.02)
    # Only discovery, one call at a time: 16 list_pops_for calls do not fit in 0.1 s.
    document = module(
        whm.url,
        max_concurrency=1,
        mailboxes={"enabled": False},
        unique_recipients={"enabled": False},
    )
    running = await start_exporter(document)
    first = await running.probe(**{SCRAPE: "0.6"})
    assert value(first, "whm_discovery_complete") == 0
    listed_first = value(first, "whm_data_items", function="list_pops_for", state="fresh") or 0
    assert listed_first < 15
    await target_of(running).collection.settled()
    second = await running.probe(**{SCRAPE: "0.6"})
    assert value(second, "whm_discovery_complete") == 1
    # Every user listed once; those the first probe saw are not asked again (refresh 10m).
    assert whm.sim.stats.calls["list_pops_for"] == 15
    assert whm.sim.stats.calls["listaccts"] == 1
    assert value(second, "whm_discovered_accounts") == len(every_account())


async def test_users_gone_from_discovery_are_dropped_with_their_series(
    start_whm, start_exporter
) -> None:
    whm: WHM = await start_whm(DATASET)
    running = await start_exporter(module(whm.url, discovery={"refresh": "0s"}))
    await running.probe()
    whm.sim.dataset = Dataset(accounts=10, users=3, folders=3)
    await running.probe()  # listaccts drops users at once; list_pops_for follows
    found = await running.probe()
    small = whm.sim.dataset
    assert accounts_of(found) == {a for u in small.user_names for a in (*small.pops[u], u)}
    state = target_of(running).state
    assert len(state.mailboxes) == 10 + 3
    assert {u for u, _ in state.senders} == set(small.user_names)


async def test_a_joiner_keeps_its_own_deadline(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET, latency=0.02)
    running = await start_exporter(module(whm.url, max_concurrency=2))
    short = asyncio.create_task(running.probe(**{SCRAPE: "0.6"}))
    # The short probe arrives first and starts the collection.
    await wait_until(lambda: whm.sim.stats.calls.total() > 0, "the short probe's first call")
    patient = asyncio.create_task(running.probe(**{SCRAPE: "30"}))
    cut = await short
    assert value(cut, "whm_probe_deadline_exceeded") == 1
    assert not patient.done()
    whole = await patient
    assert value(whole, "whm_probe_deadline_exceeded") == 0
    assert accounts_of(whole) == every_account()
    # One collection: every call made once.
    assert whm.sim.stats.calls[MAILBOX] == len(every_account())


async def test_collection_stops_taking_work_when_scrapes_stop(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET, latency=0.05)
    running = await start_exporter(module(whm.url, max_concurrency=1))
    collection = target_of(running).collection
    await running.probe(**{SCRAPE: "0.6"})
    await running.probe(**{SCRAPE: "0.6"})
    # Two probes ~0.1 s apart: the collection works on for about twice that, then stops.
    await collection.settled()
    assert collection.pending()  # work was left: it stopped for want of scrapes
    made = whm.sim.stats.calls.total()
    assert made < len(every_account())
    assert whm.sim.stats.in_flight == 0
    assert not collection._workers
    # Nothing runs that could call WHM until the next probe arrives.
    await running.probe(**{SCRAPE: "0.6"})
    assert whm.sim.stats.calls.total() > made


async def test_a_new_spammer_is_in_the_first_probe_after_it_appears(
    start_whm, start_exporter
) -> None:
    dataset = Dataset(accounts=200, users=40, folders=3)
    whm: WHM = await start_whm(dataset, latency=0.01)
    # Only the per-user totals may make a user hot here (the mail flow could too).
    document = module(whm.url, max_concurrency=4, mail_flow={"enabled": False})
    running = await start_exporter(document)
    await running.probe()
    await target_of(running).collection.settled()
    # The last user's senders were asked last: oldest first, they would come last again.
    spammer = whm.sim.quiet_address()
    user = dataset.owner(spammer)
    assert user is not None
    before = await running.probe()
    quiet = value(before, "whm_sender_unique_recipients", user=user, sender=spammer, window="1h")
    assert (quiet or 0) < 100
    # Above the data set's heavy sender (1200): its user is the hottest.
    whm.sim.start_spammer(spammer, 5000)
    status, text = await running.get("/probe?target=t&debug=true", **{SCRAPE: "0.6"})
    assert status == 200
    labels = f'user="{user}",sender="{spammer}",window="1h"'
    assert f"whm_sender_unique_recipients{{{labels}}} 5000\n" in text
    # Its breakdown was asked first after the totals: it ended among the first wave of calls
    # (four at a time; the log lists calls as they end).
    calls = [line.split()[:2] for line in text.splitlines() if line.startswith("  get_")]
    assert calls[0][0] == "get_unique_sender_recipient_count_per_user"
    assert [SENDERS, user] in calls[1:5]


async def test_a_debug_probe_leaves_counts_and_the_scrape_interval_to_prometheus(
    start_whm, start_exporter
) -> None:
    """A person opening ?debug=true collects and sees the log, but Prometheus' next scrape
    still counts every call and error since its previous one, and the debug probe is no
    scrape for the idle stop."""
    faulty = DATASET.pops[DATASET.user_names[1]][0]
    whm: WHM = await start_whm(DATASET, faults={faulty: "api_error"})
    running = await start_exporter(module(whm.url))
    status, text = await running.get("/probe?target=t&debug=true")
    assert status == 200
    assert "listaccts: success" in text
    await target_of(running).collection.settled()
    # Another look shows its own calls only, though no scrape took the earlier ones.
    _, again = await running.get("/probe?target=t&debug=true")
    log = again.split("\nMetrics:")[0]
    assert "get_unique_sender_recipient_count_per_user" in log
    assert "listaccts" not in log
    await target_of(running).collection.settled()
    scrape = await running.probe()
    # listaccts is asked once (discovery.refresh 10m), under the debug probe.
    assert value(scrape, "whm_api_calls", function="listaccts") == 1
    assert (value(scrape, "whm_api_errors", function=MAILBOX, reason="api") or 0) >= 1
    # Every address answered since the previous scrape (none): fresh, not kept.
    assert value(scrape, "whm_data_items", function=MAILBOX, state="kept") == 0
    assert target_of(running).state.interval is None


async def test_calls_outlive_the_deadline_and_land_in_the_state(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(DATASET, latency=0.3)
    running = await start_exporter(
        module(whm.url, discovery={"enabled": False}, users={"acme001": ["acme001"]})
    )
    cut = await running.probe(**{SCRAPE: "0.6"})
    assert value(cut, "whm_probe_deadline_exceeded") == 1
    assert not series(cut, "whm_mailbox_messages")
    await target_of(running).collection.settled()
    later = await running.probe(**{SCRAPE: "0.6"})
    assert accounts_of(later) == {"acme001"}
    assert value(later, "whm_api_calls", function=MAILBOX) == 1
    assert not any(series(later, "whm_api_calls_abandoned").values())


async def test_calls_cancelled_at_shutdown_are_counted_as_abandoned(
    start_whm, start_exporter
) -> None:
    whm: WHM = await start_whm(DATASET, latency=5)
    running = await start_exporter(module(whm.url))
    probe = asyncio.create_task(running.probe())
    await whm.sim.stats.called.wait()
    running.exporter.cancel_probes()
    found = await probe
    # The per-user totals, the mail flow and listaccts were in flight, and the first five server
    # settings in the bound's other places (eight).
    abandoned = {
        dict(k)["function"]: v for k, v in series(found, "whm_api_calls_abandoned").items()
    }
    in_flight = {
        "listaccts",
        "emailtrack_user_stats",
        "get_unique_sender_recipient_count_per_user",
        "get_tweaksetting",
    }
    assert {f for f, n in abandoned.items() if n} == in_flight
    assert abandoned["get_tweaksetting"] == 5
    assert sum(abandoned.values()) == 8
    assert value(found, "whm_probe_deadline_exceeded") == 1


async def test_an_exception_in_one_call_costs_that_item_alone(
    start_whm, start_exporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    whm: WHM = await start_whm(DATASET)
    victim = DATASET.pops[DATASET.user_names[2]][0]
    real = WHMClient.call

    async def sometimes_broken(
        self: WHMClient, function: str, params: Params | None = None, **options: Any
    ) -> Any:
        if params and params.get("account") == victim:
            raise ZeroDivisionError("a bug nobody foresaw")
        return await real(self, function, params, **options)

    monkeypatch.setattr(WHMClient, "call", sometimes_broken)
    found = await (await start_exporter(module(whm.url))).probe()
    assert accounts_of(found) == every_account() - {victim}
    assert value(found, "whm_api_errors", function=MAILBOX, reason="protocol") == 1
    assert value(found, "whm_up") == 1


async def test_a_waiting_probe_keeps_the_collection_going_past_the_idle_limit(
    start_whm, start_exporter
) -> None:
    whm: WHM = await start_whm(DATASET, latency=0.02)
    running = await start_exporter(module(whm.url, max_concurrency=2))
    await running.probe(**{SCRAPE: "0.6"})
    await running.probe(**{SCRAPE: "0.6"})
    # Probes 0.1 s apart: without scrapes the collection would stop after about 0.2 s, but a
    # probe that waits is someone looking, however long the work takes.
    whole = await running.probe(**{SCRAPE: "30"})
    assert value(whole, "whm_probe_deadline_exceeded") == 0
    assert accounts_of(whole) == every_account()


async def test_a_rotated_token_file_is_used_after_reload_and_the_state_kept(
    start_whm, tmp_path: Path
) -> None:
    whm: WHM = await start_whm(DATASET)
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    document = module(whm.url)
    del document["modules"]["default"]["token"]
    document["modules"]["default"]["token_file"] = str(token)
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(document))
    exporter = Exporter(load_config(path), ExporterMetrics(), str(path))
    try:
        first = await exporter.probe(exporter.targets["t"], 10)
        assert first.up
        # The operator rotates the token: WHM takes only the new one, the file holds it.
        whm.sim.token = "rotated-" + TOKEN
        token.write_text(whm.sim.token + "\n")
        assert exporter.reload()
        target = exporter.targets["t"]
        second = await exporter.probe(target, 10)
        assert second.up
        assert not second.errors
        # Same server, same items: what the target learned (discovery, answers) carried over.
        assert whm.sim.stats.calls["listaccts"] == 1
        assert len(second.mailboxes) == len(first.mailboxes)
    finally:
        await exporter.close()


@pytest.mark.parametrize("list_form", [True, False])
async def test_learning_the_mailbox_function_survives_an_unrelated_first_error(
    start_whm, start_exporter, list_form: bool
) -> None:
    # The first mailbox asked (the first user's main mailbox) fails for a reason that says
    # nothing about the function; learning goes on with the next account, one at a time.
    first = DATASET.user_names[0]
    whm: WHM = await start_whm(
        DATASET, no_list_function=not list_form, faults={f"{MAILBOX}:{first}": "http500"}
    )
    running = await start_exporter(module(whm.url))
    found = await running.probe()
    learned = MAILBOX if list_form else "get_mailbox_status"
    assert target_of(running).state.mailbox_function == learned
    assert value(found, "whm_api_errors", function=MAILBOX, reason="http") == 1
    assert accounts_of(found) == every_account() - {first}
    # The object form was tried once the list form proved missing, not for every account.
    unknown = value(found, "whm_api_errors", function=MAILBOX, reason="api")
    assert unknown == (None if list_form else 1)
    whm.sim.knobs.faults.clear()
    again = await running.probe()
    assert accounts_of(again) == every_account()
