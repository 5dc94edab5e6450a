"""What the exporter costs the WHM server it watches, under its load budget, scraped as two
Prometheus replicas scrape it (issue 18).

    python benchmarks/load_budget.py --users 1200 --addresses 4 --latency 0.08   # Done when
    python benchmarks/load_budget.py --scale 0.25 --load-budget 0.5 --record /tmp/lb.jsonl
    python benchmarks/load_budget.py --table /tmp/lb.jsonl      # the sizing table of the records

One scenario per run: the simulator (lognormal call time, optionally ``--cores``) and the exporter
(``python -m whm_exporter``, module defaults but ``--load-budget``) in processes of their own,
and two scrapers (freshness.Scraper: Prometheus 3's headers, every ``--interval`` with a
``--timeout``), the second half an interval after the first. Phases:

1. cold: from the exporter's start until every mailbox is served; the first pass is timed at
   the simulator (when its mailbox calls reach the number of mailboxes) and by the first probe
   that serves every mailbox;
2. normal: once the debt of the first pass is repaid (the budget's WINDOW, real seconds), WHM
   load = delta busy_seconds / delta time of the simulator's /_sim/stats, calls/s, mailbox calls/s
   and the mailbox pass they make (mailboxes / mailbox calls per second), the mailbox data age
   (whm_data_age_seconds of get_mailbox_status_list) at every probe, whether the per-user totals
   were fresh at every probe, and how many probes it takes to name each new spammer (started in
   quiet users at random moments); it lasts until about 1.1 passes since the first pass;
3. slow: the simulator slows down ``--slow-down`` times (POST /_sim/slowdown), then the same
   figures over ``--slow-probes`` intervals after ``--slow-settle``.

``--scale F`` multiplies every time the scenario sets (latency, interval, timeout, refresh,
max_age); every figure printed is converted back to unscaled time (times / F, rates x F; load is
a ratio and needs no conversion). The exporter's own budget constants are not scaled
(collect/budget.py: WINDOW, BURST, COOLDOWN, RECOVERY, the baseline's time constant): at scale F
the debt after a first pass lasts WINDOW / F scaled seconds and the back-off's baseline follows a
slow-down 1 / F times slower, so the ages right after a first pass are pessimistic at small
scales. Figures only, no pass/fail but the Done-when lines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from harness import (
    MAILBOX,
    SPAMMER_RATE,
    TOTALS,
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

from whm_exporter.collect.budget import WINDOW
from whm_exporter.config import build_config

_SPENT = re.compile(r"^whm_exporter_api_request_duration_seconds_sum\{[^}]*\} (\S+)$", re.M)
# Done when (issue 18): the load after a first pass, and the oldest mailbox answer, unscaled.
DONE_LOAD = 1.0
DONE_AGE = 900.0


@dataclass(frozen=True)
class Mark:
    """The simulator's counters (and the exporter's own account of its WHM time) at a moment."""

    at: float  # real seconds since the exporter started
    busy: float  # WHM time spent, seconds
    calls: int
    by_function: dict[str, int]
    spent: float  # sum of whm_exporter_api_request_duration_seconds_sum

    @property
    def mailbox_calls(self) -> int:
        return self.by_function.get(MAILBOX, 0)


@dataclass
class Phase:
    """What one phase measured, in unscaled time."""

    name: str
    load: float = math.nan  # s/s, from the simulator
    spent: float = math.nan  # s/s, from the exporter's own histogram
    calls_per_s: float = math.nan
    mailbox_calls_per_s: float = math.nan
    mailbox_pass: float = math.nan  # mailboxes / mailbox calls per second
    calls_by_function: dict[str, float] = field(default_factory=dict)  # per second
    seconds: float = 0.0  # length of the measuring window
    probes: int = 0
    age_max: float = math.nan  # mailbox age, max over the phase's probes
    age_end: float = math.nan  # at its last probe
    totals_fresh: int = 0  # probes whose per-user totals were fresh
    served_all: int = 0  # probes that served every mailbox
    served_min: int = 0
    spammers: list[int] = field(default_factory=list)  # probes until named, 0: never
    duration_max: float = math.nan  # whm_probe_duration_seconds


class Run:
    """The scenario's probes, marks and spammers, all times in real seconds since ``t0``."""

    def __init__(
        self, args: argparse.Namespace, server: Server, sim: str, exporter: Exporter, budget: float
    ) -> None:
        self.args = args
        self.budget = budget
        self.scale: float = args.scale
        self.interval: float = args.interval * args.scale
        self.server = server
        self.expected = server.mailboxes()
        self.sim = sim
        self.exporter = exporter
        self.probes: list[Probe] = []
        self.whole = asyncio.Event()
        self.full_at = math.nan  # when the first probe serving every mailbox answered
        self.stopping = False
        self.quiet = server.quiet_users(args.priority_threshold)
        self.rng = random.Random(args.seed)
        self.rng.shuffle(self.quiet)
        self.pending: list[Spammer] = []
        self.spammers: dict[str, list[Spammer]] = {}
        self.phase = "cold"
        # Last: the quiet users take seconds to find, and the first scrape is at t0.
        self.t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def on_probe(self, p: Probe) -> bool:
        self.probes.append(p)
        for spammer in list(self.pending):
            if p.at < spammer.appeared:
                continue
            spammer.probes += 1
            if spammer.address in p.senders:
                spammer.reported = p.answered
                self.pending.remove(spammer)
        if math.isnan(self.full_at) and p.status == 200 and covers(p, self.expected):
            self.full_at = p.answered
            self.whole.set()
        self.print_probe(p)
        return not self.stopping

    def print_probe(self, p: Probe) -> None:
        s = self.scale
        if p.status != 200:
            print(f"{self.phase:>6} {p.scraper:>3} {p.at / s:>8.1f} HTTP {p.status}", flush=True)
            return
        served, known = p.served(MAILBOX)
        fresh = p.items.get((TOTALS, "fresh"), 0)
        print(
            f"{self.phase:>6} {p.scraper:>3} {p.at / s:>8.1f} {p.duration / s:>6.2f}"
            f" {f'{served}/{known}':>11} {p.ages.get(MAILBOX, math.nan) / s:>8.1f} {fresh:>6}"
            f" {p.calls:>5} {p.sender_calls:>5}",
            flush=True,
        )

    async def mark(self, session: aiohttp.ClientSession) -> Mark:
        stats = await sim_stats(session, self.sim)
        async with session.get(f"{self.exporter.url}/metrics") as resp:
            text = await resp.text()
        return Mark(
            self.now(),
            stats["busy_seconds"],
            stats["total"],
            stats["calls"],
            sum(float(v) for v in _SPENT.findall(text)),
        )

    async def sleep_until(self, at: float) -> None:
        await asyncio.sleep(max(0.0, at - self.now()))

    def start_spammers(self, session: aiohttp.ClientSession, begin: float) -> list[Spammer]:
        """``--spammers`` new spammers, one per two intervals from ``begin``, each at a random
        moment of its first interval, in quiet users not used yet."""
        started: list[Spammer] = []
        for i in range(self.args.spammers):
            spammer = Spammer(self.quiet.pop())
            started.append(spammer)
            at = begin + (2 * i + self.rng.uniform(0.05, 0.95)) * self.interval
            asyncio.get_running_loop().create_task(self._spam(session, spammer, at))
        self.spammers[self.phase] = started
        return started

    async def _spam(self, session: aiohttp.ClientSession, spammer: Spammer, at: float) -> None:
        await self.sleep_until(at)
        address = self.server.dataset.pops[spammer.user][0]
        query = {"rate": str(SPAMMER_RATE), "address": address}
        async with session.post(f"{self.sim}/_sim/spammer", params=query) as resp:
            spammer.address = (await resp.json())["address"]
        spammer.appeared = self.now()
        self.pending.append(spammer)

    def resolved(self, spammers: list[Spammer]) -> bool:
        """Every spammer has appeared and was named, or a few probes missed it."""
        return all(not math.isnan(s.appeared) for s in spammers) and all(
            s not in self.pending or s.probes >= 6 for s in spammers
        )

    def phase_figures(self, name: str, begin: Mark, end: Mark) -> Phase:
        s = self.scale
        dt = end.at - begin.at
        ph = Phase(name, seconds=dt / s)
        ph.load = (end.busy - begin.busy) / dt
        ph.spent = (end.spent - begin.spent) / dt
        ph.calls_per_s = (end.calls - begin.calls) / dt * s
        ph.mailbox_calls_per_s = (end.mailbox_calls - begin.mailbox_calls) / dt * s
        ph.calls_by_function = {
            f: (n - begin.by_function.get(f, 0)) / dt * s for f, n in end.by_function.items()
        }
        if ph.mailbox_calls_per_s:
            ph.mailbox_pass = self.expected / ph.mailbox_calls_per_s
        probes = [p for p in self.probes if begin.at <= p.at < end.at and p.status == 200]
        ph.probes = len(probes)
        if probes:
            ages = [p.ages.get(MAILBOX, math.nan) / s for p in probes]
            ph.age_max, ph.age_end = max(ages), ages[-1]
            ph.totals_fresh = sum(p.items.get((TOTALS, "fresh"), 0) == 1 for p in probes)
            ph.served_all = sum(covers(p, self.expected) for p in probes)
            ph.served_min = min(p.served(MAILBOX)[0] for p in probes)
            ph.duration_max = max(p.duration for p in probes) / s
        ph.spammers = [
            0 if math.isnan(sp.reported) else sp.probes for sp in self.spammers.get(name, [])
        ]
        return ph


async def first_pass(run: Run, session: aiohttp.ClientSession) -> float:
    """Real seconds from the first probe until the simulator has had a mailbox call per mailbox
    (the last one of the first pass is then in flight); returns once a probe served every
    mailbox."""
    while True:
        stats = await sim_stats(session, run.sim)
        if stats["calls"].get(MAILBOX, 0) >= run.expected:
            reached = run.now()
            break
        await asyncio.sleep(0.2)
    # A small server is through before the first probe has answered.
    await run.whole.wait()
    return reached - run.probes[0].at


async def scenario(run: Run, session: aiohttp.ClientSession) -> dict[str, Any]:
    args, interval, s = run.args, run.interval, run.scale
    run.phase = "cold"
    pass_at = await first_pass(run, session)
    # The first pass leaves the budget in debt (at most WINDOW real seconds of its rate):
    # refreshing starts again once it is repaid.
    run.phase = "repay"
    begin = await run.mark(session)
    while begin.mailbox_calls <= run.expected and begin.at < run.full_at + WINDOW + interval:
        await run.sleep_until(begin.at + interval / 4)
        begin = await run.mark(session)
    debt = begin.at - run.full_at
    await run.sleep_until(begin.at + interval)
    run.phase = "normal"
    begin = await run.mark(session)
    spammers = run.start_spammers(session, begin.at)
    end = begin
    while True:
        await run.sleep_until(end.at + interval)
        end = await run.mark(session)
        measured = end.at - begin.at
        rate = (end.mailbox_calls - begin.mailbox_calls) / measured
        passed = run.expected / rate if rate else math.inf
        long_enough = measured >= args.min_steady * interval and (
            end.at - run.full_at >= debt + 1.1 * passed + interval
        )
        if run.resolved(spammers) and (long_enough or measured >= args.max_steady * s):
            break
    normal = run.phase_figures("normal", begin, end)
    async with session.post(f"{run.sim}/_sim/slowdown", params={"factor": args.slow_down}):
        pass
    slowed_at = run.now()
    run.phase = "settle"
    await run.sleep_until(slowed_at + args.slow_settle * interval)
    run.phase = "slow"
    begin = await run.mark(session)
    spammers = run.start_spammers(session, begin.at)
    await run.sleep_until(begin.at + args.slow_probes * interval)
    while not run.resolved(spammers):
        await run.sleep_until(run.now() + interval)
    end = await run.mark(session)
    slow = run.phase_figures("slow", begin, end)
    run.stopping = True
    after = [p for p in run.probes if p.at >= run.full_at and p.at < slowed_at]
    return {
        "repaid": debt / s,
        "first_pass": pass_at / s,
        "first_whole_probe": (run.full_at - run.probes[0].at) / s,
        "age_after_first_pass_max": max(p.ages.get(MAILBOX, 0.0) for p in after) / s,
        "totals_fresh_after_first_pass": all(
            p.items.get((TOTALS, "fresh"), 0) == 1 for p in after if p.status == 200
        ),
        "phases": [asdict(normal), asdict(slow)],
    }


def print_phase(ph: Phase) -> None:
    named = ", ".join(str(n) if n else "never" for n in ph.spammers) or "-"
    print(
        f"{ph.name} ({ph.seconds:.0f}s, {ph.probes} probes): WHM load {ph.load:.2f} s/s (the"
        f" exporter's own histogram: {ph.spent:.2f}), {ph.calls_per_s:.1f} calls/s, mailbox"
        f" calls {ph.mailbox_calls_per_s:.2f}/s = a mailbox pass every {ph.mailbox_pass:.0f}s;"
        f" mailbox age max {ph.age_max:.0f}s, at the end {ph.age_end:.0f}s; totals fresh at"
        f" {ph.totals_fresh}/{ph.probes} probes; every mailbox served at {ph.served_all}/"
        f"{ph.probes} (fewest {ph.served_min}); probe duration max {ph.duration_max:.2f}s;"
        f" new spammers named by probe {named} after they appeared"
    )
    rates = sorted(ph.calls_by_function.items(), key=lambda kv: -kv[1])
    print("  calls/s by function: " + ", ".join(f"{f} {r:.2f}" for f, r in rates if r))


def print_done_when(result: dict[str, Any]) -> None:
    """Issue 18's Done when, for the scenario it names (the caller checks that it is)."""
    normal, slow = (Phase(**p) for p in result["phases"])

    def line(what: str, ok: bool) -> None:
        print(f"  {what}: {'met' if ok else 'MISSED'}")

    print("Done when (issue 18):")
    line(f"after the first pass, WHM load <= 1.0 s/s ({normal.load:.2f})", normal.load <= DONE_LOAD)
    line(
        "per-user totals fresh at every probe after the first pass",
        result["totals_fresh_after_first_pass"] and normal.totals_fresh == normal.probes,
    )
    line(
        f"a new spammer named by the next probe ({normal.spammers})",
        all(n == 1 for n in normal.spammers),
    )
    line(
        f"every mailbox served ({normal.served_all}/{normal.probes}) and none older than 15 min"
        f" (max {result['age_after_first_pass_max']:.0f}s since the first pass)",
        normal.served_all == normal.probes and result["age_after_first_pass_max"] <= DONE_AGE,
    )
    line(f"4x slower: load <= 1.0 s/s ({slow.load:.2f})", slow.load <= DONE_LOAD)
    line(
        f"4x slower: totals fresh at every probe ({slow.totals_fresh}/{slow.probes}) and new"
        f" spammers named by the next probe ({slow.spammers})",
        slow.totals_fresh == slow.probes and all(n == 1 for n in slow.spammers),
    )


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def drive(args: argparse.Namespace) -> dict[str, Any]:
    s = args.scale
    server = Server(args.users, args.users * args.addresses, args.folders, args.seed)
    mean = args.latency * math.exp(args.spread**2 / 2)
    extra = ["--cores", str(args.cores)] if args.cores else []
    sim_proc, sim = start_simulator(server, args, extra)
    tmp = tempfile.TemporaryDirectory(prefix="whm-load-budget-")
    config = exporter_config(sim, args, None)
    module = build_config(config, {"WHM_BENCH_TOKEN": "x"}).config.modules["default"]
    print(
        f"# whm-exporter load-budget benchmark  {platform.node()}  python"
        f" {platform.python_version()}  {os.cpu_count()} cpus  load {loadavg()}"
        f"  {datetime.now(UTC):%Y-%m-%d %H:%M}Z"
    )
    print(
        f"# {server.users} users ({len(server.active())} active) x {args.addresses} addresses:"
        f" {server.mailboxes()} mailboxes; latency median {args.latency * 1000:.0f}ms, lognormal"
        f" sigma {args.spread} (mean {mean * 1000:.1f}ms), cores {args.cores or '-'};"
        f" C={args.concurrency}; load_budget {module.load_budget:g}; two scrapers every"
        f" {args.interval:g}s, {args.interval / 2:g}s apart, timeout {args.timeout:g}s;"
        f" mailboxes refresh {module.mailboxes.refresh / s:g}s, max_age"
        f" {module.mailboxes.max_age / s:g}s; slow-down {args.slow_down:g}x"
    )
    print(
        f"# scale {s:g}: every time printed is unscaled (real / {s:g}); the exporter's budget"
        f" constants are not scaled (the first pass's debt lasts {WINDOW:g}s real ="
        f" {WINDOW / s:g}s here)",
        flush=True,
    )
    exporter = Exporter.with_config(config, Path(tmp.name), "exporter")
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            run = Run(args, server, sim, exporter, module.load_budget)
            print(
                f"{'phase':>6} {'scr':>3} {'at s':>8} {'dur s':>6} {'mailboxes':>11}"
                f" {'mb age':>8} {'totals':>6} {'calls':>5} {'sndr':>5}",
                flush=True,
            )
            a = Scraper("A", session, exporter, args)
            b = Scraper("B", session, exporter, args)
            scrapers = asyncio.gather(
                a.run(run.t0, run.t0, run.on_probe),
                b.run(run.t0, run.t0 + a.interval / 2, run.on_probe),
            )
            result = await scenario(run, session)
            await scrapers
        result["exporter_cpu"] = exporter.cpu_seconds()
        warnings = exporter.warnings()
    finally:
        exporter.stop()
        sim_proc.terminate()
        sim_proc.wait()
        tmp.cleanup()
    result.update(
        users=args.users,
        addresses=args.addresses,
        latency=args.latency,
        cores=args.cores,
        concurrency=args.concurrency,
        budget=module.load_budget,
        scale=s,
        slow_down=args.slow_down,
        mailboxes=server.mailboxes(),
        warnings=warnings,
    )
    print()
    print(
        f"first pass, from the first probe: the simulator had its {server.mailboxes()} mailbox"
        f" calls after {result['first_pass']:.0f}s; the first probe serving every mailbox"
        f" answered after {result['first_whole_probe']:.0f}s"
    )
    print(
        f"refreshing resumed {result['repaid']:.0f}s after the first whole probe (the first"
        " pass's debt)"
    )
    print(
        f"after the first pass: mailbox age up to {result['age_after_first_pass_max']:.0f}s;"
        f" totals fresh at every probe: {result['totals_fresh_after_first_pass']}"
    )
    for ph in result["phases"]:
        print_phase(Phase(**ph))
    print(
        f"exporter: CPU {result['exporter_cpu']:.1f}s; warnings/errors in its log: {len(warnings)}"
    )
    for line in warnings[:5]:
        print(f"  {line}")
    print(f"# load at the end: {loadavg()}")
    return result


def table(paths: list[str]) -> None:
    """The sizing table of docs/collection.md, one row per ``--record``: each figure normal /
    slowed down."""
    print(
        "| server | latency | scale | load_budget | WHM load s/s | calls/s | mailbox pass |"
        " mailbox age max | fewest mailboxes served | new spammer named by probe | first pass |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    records = [json.loads(line) for path in paths for line in Path(path).read_text().splitlines()]
    for r in records:
        normal, slow = r["phases"]
        spammers = normal["spammers"] + slow["spammers"]
        named = "never" if 0 in spammers else f"{max(spammers)}" if spammers else "-"
        passes = " / ".join(
            "no mailbox call" if not ph["mailbox_calls_per_s"] else f"{ph['mailbox_pass'] / 60:.0f}"
            for ph in (normal, slow)
        )
        print(
            f"| {r['users']:,} x {r['addresses']} | {r['latency'] * 1000:.0f} ms |"
            f" {r['scale']:g} | {r['budget']:g} | {normal['load']:.2f} / {slow['load']:.2f} |"
            f" {normal['calls_per_s']:.1f} / {slow['calls_per_s']:.1f} |"
            f" {passes} min | {r['age_after_first_pass_max'] / 60:.0f} min |"
            f" {normal['served_min']:,} / {slow['served_min']:,} of {r['mailboxes']:,} | {named} |"
            f" {r['first_pass']:.0f} s |"
        )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    server_arguments(p)
    scrape_arguments(p)
    p.add_argument("--cores", type=int, default=0, help="the simulator's cores (0: no limit)")
    p.add_argument("--spammers", type=int, default=3, help="new spammers per phase")
    p.add_argument("--min-steady", type=int, default=8, help="intervals measured at least")
    p.add_argument(
        "--max-steady", type=float, default=5400.0, help="seconds measured at most (normal)"
    )
    p.add_argument("--slow-down", type=float, default=4.0, help="factor of the slow-down")
    p.add_argument("--slow-settle", type=int, default=2, help="intervals not measured after it")
    p.add_argument("--slow-probes", type=int, default=12, help="intervals measured after it")
    p.add_argument("--record", type=Path, help="append the figures as a JSON line to this file")
    p.add_argument("--table", nargs="+", metavar="FILE", help="print the sizing table of records")
    args = p.parse_args()
    if args.table:
        table(args.table)
        return
    result = asyncio.run(drive(args))
    cases = (args.users, args.addresses, args.latency, args.concurrency, result["budget"])
    if cases == (1200, 4, 0.08, 8, 1.0) and args.slow_down == 4:
        print_done_when(result)
    if args.record:
        with args.record.open("a") as out:
            out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
