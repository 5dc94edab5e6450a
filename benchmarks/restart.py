"""What a restart costs with --storage.path, on a server too big for one scrape (issue 20).

    python benchmarks/restart.py                  # 1,200 users x 4 addresses, ~80 ms a call
    python benchmarks/restart.py --users 200 --scale 0.25     # a quick run

The simulator and the exporter (``python -m whm_exporter --storage.path=DIR``, module
defaults: load budget 1.0, max_concurrency 8) in processes of their own; this process scrapes
``/probe`` every 30 s as Prometheus does (benchmarks/freshness.py's Scraper). For each way of
stopping, SIGTERM and then ``kill -9``:

1. from a cold start, scrape until every mailbox is served, then until a periodic snapshot
   written after that moment is on disk (the exporter writes at most every 60 s);
2. stop the exporter that way, wait ``--downtime`` seconds, start it again on the same
   directory and scrape at once, then every interval for a minute;
3. report: what the first probe after the restart served (addresses, data age against the
   downtime), and the WHM calls of the first minute against a discovery pass (listaccts and one
   list_pops_for per user) and a mailbox pass (one call per address and main mailbox).

The same run without --storage.path gives the cold-start figures to compare. Figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    MAILBOX,
    Exporter,
    Probe,
    Scraper,
    Server,
    exporter_config,
    scrape_arguments,
    server_arguments,
    sim_stats,
    start_simulator,
)

DISCOVERY = ("listaccts", "list_pops_for")


def start_exporter(config_path: Path, storage: Path | None, log: Path) -> Exporter:
    extra = () if storage is None else (f"--storage.path={storage}",)
    return Exporter.start(config_path, log, extra)


@dataclass
class Restart:
    how: str
    to_whole: float = 0.0  # seconds from the cold start to every mailbox served
    downtime: float = 0.0
    first: Probe | None = None
    minute: Counter[str] | None = None
    probes: int = 0
    load_seconds: float = 0.0  # from the restart to /-/healthy


async def scrape_until(scraper: Scraper, t0: float, done: object) -> list[Probe]:
    found: list[Probe] = []

    def go_on(p: Probe) -> bool:
        found.append(p)
        return not done(p)  # type: ignore[operator]

    await scraper.run(t0, time.monotonic(), go_on)
    return found


async def one(
    how: str,
    session: aiohttp.ClientSession,
    server: Server,
    args: argparse.Namespace,
    workdir: Path,
    keep: bool,
) -> Restart:
    result = Restart(how)
    sim_proc, sim = start_simulator(server, args)
    config_path = workdir / f"{how}.yml"
    config_path.write_text(json.dumps(exporter_config(sim, args, None)))
    storage = workdir / f"state-{how}" if keep else None
    log = workdir / f"{how}.log"
    expected = server.mailboxes()
    exporter = start_exporter(config_path, storage, log)
    try:
        scraper = Scraper("A", session, exporter, args)
        t0 = time.monotonic()
        await scrape_until(scraper, t0, lambda p: p.served(MAILBOX)[0] == expected)
        result.to_whole = time.monotonic() - t0
        if storage is not None:
            whole_at = time.time()

            def snapshot_after_whole(_: Probe) -> bool:
                files = list(storage.glob("*.state"))
                return bool(files) and files[0].stat().st_mtime > whole_at

            await scrape_until(scraper, t0, snapshot_after_whole)
        stopped = time.monotonic()
        if how == "kill -9":
            exporter.proc.send_signal(signal.SIGKILL)
        else:
            exporter.proc.send_signal(signal.SIGTERM)
        exporter.proc.wait(timeout=60)
        await asyncio.sleep(args.downtime * args.scale)
        before = Counter((await sim_stats(session, sim))["calls"])
        started = time.monotonic()
        exporter = start_exporter(config_path, storage, log)
        result.load_seconds = time.monotonic() - started
        result.downtime = time.monotonic() - stopped
        scraper = Scraper("A", session, exporter, args)
        t1 = time.monotonic()
        minute = 60 * args.scale
        probes = await scrape_until(scraper, t1, lambda p: p.at + scraper.interval > minute)
        # Counted a minute after the restart, whatever the last scrape's moment.
        await asyncio.sleep(max(0.0, t1 + minute - time.monotonic()))
        after = Counter((await sim_stats(session, sim))["calls"])
        result.minute = after - before
        result.first = probes[0]
        result.probes = len(probes)
    finally:
        exporter.stop()
        sim_proc.terminate()
        sim_proc.wait()
    return result


def report(r: Restart, server: Server, args: argparse.Namespace) -> None:
    s = args.scale
    users = len(server.active())
    discovery_pass = 1 + users
    mailbox_pass = server.mailboxes()
    assert r.first is not None
    assert r.minute is not None
    served = r.first.served(MAILBOX)[0]
    age = r.first.ages.get(MAILBOX, 0.0)
    discovery = sum(r.minute[f] for f in DISCOVERY)
    mailboxes = r.minute[MAILBOX]
    print(
        f"{r.how}: whole {r.to_whole / s:.0f}s after the cold start; down {r.downtime / s:.1f}s,"
        f" /-/healthy {r.load_seconds:.2f}s after the start (not scaled)"
    )
    print(
        f"  first probe after the restart: {served}/{mailbox_pass} addresses, oldest mailbox"
        f" answer {age / s:.1f}s old (downtime {r.downtime / s:.1f}s:"
        f" {'met' if age >= r.downtime else 'MISSED'})"
    )
    print(
        f"  first minute ({r.probes} probes): discovery calls {discovery} of a pass of"
        f" {discovery_pass} ({discovery / discovery_pass:.3f}; target <= 0.1:"
        f" {'met' if discovery <= discovery_pass / 10 else 'MISSED'}), mailbox calls"
        f" {mailboxes} of a pass of {mailbox_pass} ({mailboxes / mailbox_pass:.3f};"
        f" target <= 0.25: {'met' if mailboxes <= mailbox_pass / 4 else 'MISSED'});"
        f" all calls {sum(r.minute.values())}"
    )


async def drive(args: argparse.Namespace) -> None:
    server = Server(args.users, args.users * args.addresses, args.folders, args.seed)
    print(
        f"# whm-exporter restart benchmark  {platform.node()}  python"
        f" {platform.python_version()}  {os.cpu_count()} cpus  load"
        f" {' '.join(f'{x:.2f}' for x in os.getloadavg())}  {datetime.now(UTC):%Y-%m-%d %H:%M}Z"
    )
    print(
        f"# {server.users} users ({len(server.active())} active) x {args.addresses} addresses:"
        f" {server.mailboxes()} mailboxes; latency median {args.latency * 1000:.0f}ms x scale,"
        f" sigma {args.spread}; C={args.concurrency}; scrape every {args.interval:g}s, timeout"
        f" {args.timeout:g}s; scale {args.scale:g} (figures below in unscaled seconds, but the"
        f" exporter's 60 s write interval and budget window are not scaled)",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="whm-restart-") as tmp:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            runs = [("SIGTERM", True), ("kill -9", True), ("SIGTERM, no --storage.path", False)]
            for how, keep in runs:
                report(await one(how, session, server, args, Path(tmp), keep), server, args)
    print(f"# load at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    server_arguments(p, users=1200, addresses=4, latency=0.08)
    scrape_arguments(p)
    p.add_argument("--downtime", type=float, default=20.0, help="seconds the exporter is down")
    asyncio.run(drive(p.parse_args()))


if __name__ == "__main__":
    main()
