"""How fresh the exporter keeps a server too big for one scrape, scraped as Prometheus scrapes it.

    python benchmarks/freshness.py               # issue 9: 1,500 users x 5 addresses, ~15 min
    python benchmarks/freshness.py --scale 0.1 --users 300    # a smoke run, ~2 min

Three processes besides this one: the simulator, the exporter (``python -m whm_exporter``, so its
peak RSS is its own) and, first, a fetch-only floor. This process plays Prometheus: it GETs
/probe with Prometheus 3's ``Accept`` and ``X-Prometheus-Scrape-Timeout-Seconds`` on a fixed
tick, and reads each answer's own figures (whm_data_items, whm_data_age_seconds, whm_api_calls,
...). In order:

1. floor: WHMClient alone at concurrency C for a while gives the throughput; the calls of a first
   pass (listaccts, per-user totals, list_pops_for per user, mailboxes of every address and main
   mailbox, senders per user; suspended users skipped) divided by it is the floor pass time;
2. one scraper from a cold start until every address is reported, then in steady state, with
   spammers started at random moments in different quiet users;
3. a second scraper at another phase (the server does not fit in one scrape): calls in flight;
4. scrapes stop: WHM calls once the idle window (twice the interval) has passed;
5. meanwhile, a small server that fits in one scrape, with ``refresh`` a little below the
   interval (config.example.yaml): WHM calls per minute with two scrapers / with one.

``--scale F`` multiplies every time (latency, interval, timeout, refresh, idle waits) for a
quick run. Figures only, no pass/fail: the table at the end sets each beside its target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import cycle
from pathlib import Path
from typing import Any

import aiohttp
from harness import (
    MAILBOX,
    ROOT,
    SENDERS,
    SPAMMER_RATE,
    TOKEN,
    Exporter,
    Probe,
    Scraper,
    Server,
    Spammer,
    covers,
    exporter_config,
    scrape_arguments,
    server_arguments,
    sim_stats,
    start_simulator,
)

from whm_exporter.config import build_config

# --- the floor --------------------------------------------------------------------------------


async def floor_side(url: str, server: Server, concurrency: int, seconds: float) -> dict[str, Any]:
    """Calls of a first pass, round and round, through WHMClient alone at ``concurrency`` for
    ``seconds``: the throughput any exporter on this client could reach."""
    from pydantic import SecretStr

    from whm_exporter.config import TLSConfig
    from whm_exporter.whm.client import WHMClient, new_session

    ds = server.dataset
    end = int(time.time()) - 60
    window = {"start_time": end - 3600, "end_time": end}
    plan: list[tuple[str, dict[str, str | int]]] = []
    for user in server.active():
        plan.append(("list_pops_for", {"user": user}))
        plan += [(MAILBOX, {"account": a}) for a in (*ds.pops[user], user)]
        plan.append((SENDERS, {"user": user, **window}))
    calls: Iterator[tuple[str, dict[str, str | int]]] = cycle(plan)
    session = new_session(TLSConfig(), concurrency)
    client = WHMClient(
        session, url, "root", SecretStr(TOKEN), request_timeout=60, max_response_bytes=4 << 20
    )
    done = 0
    started = time.monotonic()
    stop_at = started + seconds

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < stop_at:
            function, params = next(calls)
            await client.call(function, params)
            done += 1

    cpu = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    await session.close()
    return {"calls": done, "seconds": elapsed, "cpu": time.process_time() - cpu}


def measure_floor(url: str, server: Server, args: argparse.Namespace) -> dict[str, Any]:
    argv = [
        *(sys.executable, __file__, "--side", "floor", "--url", url),
        *sys.argv[1:],
    ]
    out = subprocess.run(argv, cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


# --- the big server ---------------------------------------------------------------------------


@dataclass
class BigRun:
    probes: list[Probe] = field(default_factory=list)
    full_index: int | None = None
    spammers: list[Spammer] = field(default_factory=list)
    steady_to: int = 0
    max_in_flight: int = 0
    calls_after_stop: int | None = None
    idle_window: tuple[float, float] = (0.0, 0.0)
    last_arrival: float = 0.0


async def big_server(
    session: aiohttp.ClientSession,
    sim: str,
    exporter: Exporter,
    server: Server,
    args: argparse.Namespace,
    rng: random.Random,
    floor_pass: float,
) -> tuple[BigRun, float]:
    """Phases 2 and 3; returns the run and when (monotonic) the last scrape began."""
    run = BigRun()
    expected = server.mailboxes()
    a = Scraper("A", session, exporter, args)
    interval = a.interval
    giving_up: int = math.ceil(args.give_up * floor_pass / interval) + 2
    quiet = server.quiet_users(args.priority_threshold)
    rng.shuffle(quiet)
    pending: list[Spammer] = []
    t0 = time.monotonic()

    async def spam(spammer: Spammer, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        query = {"rate": str(SPAMMER_RATE), "address": server.dataset.pops[spammer.user][0]}
        async with session.post(f"{sim}/_sim/spammer", params=query) as resp:
            spammer.address = (await resp.json())["address"]
        spammer.appeared = time.monotonic() - t0
        pending.append(spammer)

    tasks: set[asyncio.Task[None]] = set()

    def watch(p: Probe) -> None:
        for spammer in list(pending):
            if p.at < spammer.appeared:
                continue
            spammer.probes += 1
            if spammer.address in p.senders:
                spammer.reported = p.answered
                pending.remove(spammer)

    def single(p: Probe) -> bool:
        run.probes.append(p)
        watch(p)
        print_probe(len(run.probes), p, expected)
        n = len(run.probes)
        if run.full_index is None:
            if covers(p, expected):
                run.full_index = n - 1
                # One spammer per interval from the next tick on, at a random moment in it.
                tick = t0 + n * interval
                for i, user in enumerate(quiet[: args.spammers]):
                    at = tick + (i + rng.uniform(0.05, 0.95)) * interval
                    spammer = Spammer(user)
                    run.spammers.append(spammer)
                    task = asyncio.get_running_loop().create_task(spam(spammer, at))
                    tasks.add(task)
            return n < giving_up
        steady = n - 1 - run.full_index
        started = all(not math.isnan(s.appeared) for s in run.spammers)
        unresolved = pending and steady < args.steady + 10
        return steady < args.steady or not started or bool(unresolved)

    await a.run(t0, t0, single)
    run.steady_to = len(run.probes)
    await asyncio.gather(*tasks)
    if run.full_index is None:
        print(f"# every address was never reported within {giving_up} probes", flush=True)
    # Phase 3: a second scraper at another phase; the server does not fit in one scrape.
    b = Scraper("B", session, exporter, args)
    next_a = t0 + len(run.probes) * interval
    ha_left: dict[str, int] = {"A": args.ha_probes, "B": args.ha_probes}

    def both(p: Probe) -> bool:
        run.probes.append(p)
        print_probe(len(run.probes), p, expected)
        ha_left[p.scraper] -= 1
        return ha_left[p.scraper] > 0

    await asyncio.gather(
        a.run(t0, next_a, both), b.run(t0, next_a + args.ha_phase * interval, both)
    )
    run.last_arrival = max(p.at for p in run.probes)
    run.max_in_flight = (await sim_stats(session, sim))["max_in_flight"]
    return run, t0 + run.last_arrival


async def idle_check(
    session: aiohttp.ClientSession,
    sim: str,
    last_arrival: float,
    args: argparse.Namespace,
    run: BigRun,
) -> None:
    """Phase 4: no WHM call once twice the interval has passed since the last scrape."""
    interval = args.interval * args.scale
    # The collection stops taking work 2 x interval after the last probe arrived; a call
    # started just before is counted by the simulator when it arrives, so a second's grace.
    begin = last_arrival + 2 * interval + 1.0
    await asyncio.sleep(max(0.0, begin - time.monotonic()))
    before = (await sim_stats(session, sim))["total"]
    await asyncio.sleep(2 * interval)
    run.calls_after_stop = (await sim_stats(session, sim))["total"] - before
    run.idle_window = (begin - last_arrival, 2 * interval)


# --- the small server: two scrapers ------------------------------------------------------------


@dataclass
class FitRun:
    probes: list[Probe] = field(default_factory=list)
    one: tuple[int, float] = (0, 0.0)  # WHM calls, seconds
    two: tuple[int, float] = (0, 0.0)
    max_in_flight: int = 0
    refresh: float = 0.0
    rss: float = 0.0
    mailboxes: int = 0


async def fitting_server(
    session: aiohttp.ClientSession, server: Server, args: argparse.Namespace, workdir: Path
) -> FitRun:
    """Phase 5: WHM calls per minute with one scraper, then with two at different phases."""
    fit = FitRun()
    interval: float = args.interval * args.scale
    fit.refresh = args.ha_refresh * args.scale
    sim_proc, sim = start_simulator(server, args)
    exporter = Exporter.with_config(exporter_config(sim, args, fit.refresh), workdir, "fit")
    expected = fit.mailboxes = server.mailboxes()
    try:
        a = Scraper("A", session, exporter, args)
        b = Scraper("B", session, exporter, args)
        warm: int = args.fit_warmup
        k: int = args.fit_probes
        marks: dict[int, tuple[int, float]] = {}
        # Counts are read this long before A's tick, so no scrape straddles a reading.
        margin: float = 0.5 * args.scale
        t0 = time.monotonic()

        async def mark_before(index: int) -> None:
            # Just before A's probe ``index``: the count of WHM calls so far.
            await asyncio.sleep(max(0.0, t0 + index * interval - margin - time.monotonic()))
            marks[index] = ((await sim_stats(session, sim))["total"], time.monotonic())

        two_from = warm + k + 1  # A's probe after which the count with two begins
        stop_after = two_from + k
        counting = [warm, warm + k, two_from, stop_after]

        def on_a(p: Probe) -> bool:
            fit.probes.append(p)
            print_probe(len(fit.probes), p, expected)
            return sum(q.scraper == "A" for q in fit.probes) < stop_after

        def on_b(p: Probe) -> bool:
            fit.probes.append(p)
            print_probe(len(fit.probes), p, expected)
            return p.at + interval < stop_after * interval - margin

        b_first = t0 + (warm + k + args.ha_phase) * interval
        await asyncio.gather(
            a.run(t0, t0, on_a),
            b.run(t0, b_first, on_b),
            *(mark_before(i) for i in counting),
        )
        fit.one = (marks[warm + k][0] - marks[warm][0], marks[warm + k][1] - marks[warm][1])
        fit.two = (
            marks[stop_after][0] - marks[two_from][0],
            marks[stop_after][1] - marks[two_from][1],
        )
        fit.max_in_flight = (await sim_stats(session, sim))["max_in_flight"]
        fit.rss = exporter.peak_rss_mb()
    finally:
        exporter.stop()
        sim_proc.terminate()
        sim_proc.wait()
    return fit


# --- output -----------------------------------------------------------------------------------


def print_header() -> None:
    print(
        f"{'#':>4} {'scr':>3} {'at s':>7} {'http s':>6} {'dur s':>6} {'ddl':>3}"
        f" {'mailboxes':>11} {'addr':>5} {'senders':>9} {'disc':>4} {'calls':>5} {'sndr':>5}"
        f" {'aband':>5} {'oldest s':>8} {'rss MB':>6}",
        flush=True,
    )


def print_probe(n: int, p: Probe, expected: int) -> None:
    if p.status != 200:
        print(f"{n:>4} {p.scraper:>3} {p.at:>7.1f} {p.http:>6.2f} HTTP {p.status}", flush=True)
        return
    ms, mk = p.served(MAILBOX)
    ss, sk = p.served(SENDERS)
    print(
        f"{n:>4} {p.scraper:>3} {p.at:>7.1f} {p.http:>6.2f} {p.duration:>6.2f} {int(p.deadline):>3}"
        f" {f'{ms}/{mk}':>11} {p.accounts:>5} {f'{ss}/{sk}':>9} {int(p.discovery_complete):>4}"
        f" {p.calls:>5} {p.sender_calls:>5} {p.abandoned:>5} {p.oldest():>8.1f} {p.rss:>6.1f}",
        flush=True,
    )


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def report(
    args: argparse.Namespace,
    server: Server,
    first_pass: int,
    floor_pass: float,
    run: BigRun,
    fit: FitRun,
    rss: float,
    cpu: float,
    warnings: list[str],
) -> None:
    interval = args.interval * args.scale
    expected = server.mailboxes()
    singles = [p for p in run.probes[: run.steady_to] if p.scraper == "A"]
    print()
    if run.full_index is not None:
        full = singles[run.full_index]
        t_full = full.answered
        first_after = next((p for p in singles if p.at >= 1.15 * floor_pass), None)
        calls_to_full = sum(p.calls for p in singles[: run.full_index + 1])
        print(
            f"full coverage: probe {run.full_index + 1} (started {full.at:.1f}s, answered"
            f" {t_full:.1f}s) = {t_full / floor_pass:.2f} x floor pass time {floor_pass:.1f}s;"
            f" {calls_to_full} calls to get there (a first pass is {first_pass})"
        )
        if first_after is not None:
            ok = first_after.served(MAILBOX)[0] == expected == first_after.accounts
            print(
                f"first probe after 1.15 x floor ({1.15 * floor_pass:.1f}s): started"
                f" {first_after.at:.1f}s, {first_after.accounts}/{expected} addresses"
                f" ({_verdict(ok)})"
            )
    # Steady state: the probes after the first that reported every address.
    whole = singles[run.full_index + 1 :] if run.full_index is not None else []
    if whole:
        ages = [p.oldest() for p in whole]
        limit = 1.2 * floor_pass + interval
        print(
            f"steady state ({len(whole)} probes): oldest age median {statistics.median(ages):.1f}s,"
            f" max {max(ages):.1f}s = {max(ages) / floor_pass:.2f} x floor pass time"
            f" (target <= 1.2 x floor + interval = {limit:.1f}s)"
        )
        disc = max(p.ages.get("list_pops_for", 0.0) for p in whole)
        print(f"  discovery (list_pops_for) age up to {disc:.1f}s (its refresh is 10m x scale)")
    for s in run.spammers:
        print(
            f"spammer {s.address} (user {s.user}): appeared {s.appeared:.1f}s,"
            f" reported by probe {s.probes} after it"
            + (f" at {s.reported:.1f}s" if not math.isnan(s.reported) else " (never seen)")
        )
    durations = [p.duration for p in whole]
    http = [p.http for p in whole]
    if durations:
        print(
            f"probe duration once whole ({len(whole)} probes): median"
            f" {statistics.median(durations):.2f}s, max {max(durations):.2f}s; HTTP median"
            f" {statistics.median(http):.2f}s, max {max(http):.2f}s; late (> scrape timeout):"
            f" {sum(h > args.timeout * args.scale for h in http)}"
        )
    abandoned = sum(p.abandoned for p in run.probes)
    deadline = sum(p.deadline for p in whole)
    print(
        f"abandoned calls while scrapes continue: {abandoned};"
        f" deadline flag once whole: {deadline}/{len(whole)}"
    )
    both = run.probes[run.steady_to :]
    if both:
        print(
            f"two scrapers on the big server ({len(both)} probes): per-sender calls per probe"
            f" median {statistics.median(p.sender_calls for p in both):.0f}, oldest age"
            f" {both[0].oldest():.1f}s -> {both[-1].oldest():.1f}s"
        )
    print(
        f"max in flight at the simulator, two scrapers (max_concurrency {args.concurrency}):"
        f" {run.max_in_flight}"
    )
    print(
        f"WHM calls after scrapes stopped: {run.calls_after_stop} in {run.idle_window[1]:.0f}s,"
        f" counted from {run.idle_window[0]:.1f}s after the last scrape"
    )
    one = fit.one[0] / fit.one[1] * 60
    two = fit.two[0] / fit.two[1] * 60
    print(
        f"fitting server ({len(fit.probes)} probes, refresh {fit.refresh:g}s): one scraper"
        f" {fit.one[0]} calls in {fit.one[1]:.1f}s = {one:.0f}/min; two {fit.two[0]} in"
        f" {fit.two[1]:.1f}s = {two:.0f}/min; ratio {two / one:.3f}; max in flight"
        f" {fit.max_in_flight}"
    )
    first = fit.probes[0]
    print(
        f"fitting server's first probe: {first.accounts}/{fit.mailboxes} addresses in"
        f" {first.duration:.2f}s, deadline flag {int(first.deadline)}"
    )
    print(f"exporter: peak RSS {rss:.1f} MB (fitting server's: {fit.rss:.1f} MB), CPU {cpu:.1f}s")
    print(f"exporter warnings/errors in the log: {len(warnings)}")
    for line in warnings[:5]:
        print(f"  {line}")


# --- main -------------------------------------------------------------------------------------


async def drive(args: argparse.Namespace) -> None:
    scale = args.scale
    big = Server(args.users, args.users * args.addresses, args.folders, args.seed)
    small = Server(args.fit_users, args.fit_users * args.addresses, args.folders, args.seed)
    mean = args.latency * scale * math.exp(args.spread**2 / 2)
    print(
        f"# whm-exporter freshness benchmark  {platform.node()}  python"
        f" {platform.python_version()}  {os.cpu_count()} cpus  load"
        f" {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        f"  {datetime.now(UTC):%Y-%m-%d %H:%M}Z"
    )
    print(
        f"# {big.users} users ({len(big.active())} active) x {args.addresses} addresses:"
        f" {big.mailboxes()} mailboxes; latency median {args.latency * scale * 1000:.0f}ms,"
        f" lognormal sigma {args.spread} (mean {mean * 1000:.1f}ms), capacity"
        f" {args.capacity or '-'}; C={args.concurrency}; scrape every"
        f" {args.interval * scale:g}s, timeout {args.timeout * scale:g}s; scale {scale:g}",
    )
    hot = len(big.hot_users(args.priority_threshold))
    print(
        f"# {hot} of the active users hot at every probe (1h total at or above"
        f" priority_threshold {args.priority_threshold}, or the heavy sender's)",
        flush=True,
    )
    rng = random.Random(args.seed)
    sim_proc, sim = start_simulator(big, args)
    tmp = tempfile.TemporaryDirectory(prefix="whm-freshness-")
    workdir = Path(tmp.name)
    exporter: Exporter | None = None
    try:
        floor = measure_floor(sim, big, args)
        throughput = floor["calls"] / floor["seconds"]
        config = exporter_config(sim, args, None)
        module = build_config(config, {"WHM_BENCH_TOKEN": TOKEN}).config.modules["default"]
        first_pass = big.first_pass_calls(module)
        floor_pass = first_pass / throughput
        print(
            f"floor: WHMClient alone at C={args.concurrency} for {floor['seconds']:.1f}s:"
            f" {floor['calls']} calls = {throughput:.1f} calls/s (C / mean latency ="
            f" {args.concurrency / mean:.1f}); first pass {first_pass} calls ->"
            f" floor pass time {floor_pass:.1f}s",
            flush=True,
        )
        exporter = Exporter.with_config(config, workdir, "big")
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            print_header()
            run, last_arrival = await big_server(session, sim, exporter, big, args, rng, floor_pass)
            print("# scrapes of the big server stopped; the fitting server, meanwhile:", flush=True)
            idle = asyncio.get_running_loop().create_task(
                idle_check(session, sim, last_arrival, args, run)
            )
            fit = await fitting_server(session, small, args, workdir)
            await idle
            rss, cpu = exporter.peak_rss_mb(), exporter.cpu_seconds()
        warnings = exporter.warnings()
        exporter.stop()
        report(args, big, first_pass, floor_pass, run, fit, rss, cpu, warnings)
        print(f"# load at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        if exporter is not None:
            exporter.stop()
        sim_proc.terminate()
        sim_proc.wait()
        tmp.cleanup()


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    server_arguments(p)
    scrape_arguments(p)
    p.add_argument("--floor-seconds", type=float, default=30.0, help="floor measurement length")
    p.add_argument("--steady", type=int, default=8, help="probes measured once every address is in")
    p.add_argument("--spammers", type=int, default=5, help="spammers started in steady state")
    p.add_argument("--ha-probes", type=int, default=4, help="probes per scraper with two")
    p.add_argument("--ha-phase", type=float, default=0.4, help="B's offset, in intervals")
    p.add_argument("--ha-refresh", type=float, default=25.0, help="refresh with two scrapers, s")
    p.add_argument("--fit-users", type=int, default=40, help="users of the fitting server")
    p.add_argument("--fit-warmup", type=int, default=2, help="probes before counting")
    p.add_argument("--fit-probes", type=int, default=3, help="intervals counted per case")
    p.add_argument("--give-up", type=float, default=3.0, help="x floor before giving up coverage")
    p.add_argument("--side", choices=["floor"], help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.side == "floor":
        big = Server(args.users, args.users * args.addresses, args.folders, args.seed)
        seconds = args.floor_seconds * args.scale
        print(json.dumps(asyncio.run(floor_side(args.url, big, args.concurrency, seconds))))
        return
    asyncio.run(drive(args))


if __name__ == "__main__":
    main()
