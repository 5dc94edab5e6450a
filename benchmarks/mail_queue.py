"""What reading Exim's queue costs the exporter (issue 26): fetch_mail_queue at 10,000, 50,000,
100,000 and 200,000 messages.

    python benchmarks/mail_queue.py                          # the four sizes, then 50,000 all on
    python benchmarks/mail_queue.py --sizes 50000 --probes 5 --no-all-families

For each size the simulator (``--queue-messages N``) runs in a process of its own, and its answer
is built by one call of this process before the exporter starts (the simulator makes the body at
its first call; real WHM's ``exim -bpra`` time is not in the figures unless ``--latency`` > 0,
which adds the simulator's 20 µs a message). The exporter runs in a fresh process too, so its
memory is its own: the program's Exporter and web app (as tests/conftest.py builds them, the
program's event loop and garbage-collector tuning) with only the queue and the inventory on
(``mail_queue.refresh: 0s``, no load budget: every probe reads the whole queue), scraped over
HTTP by a client in that process. In that process, for each probe:

- the call's time as the exporter saw it: its own ``whm_exporter_api_request_duration_seconds``
  for fetch_mail_queue (request to the last byte parsed and counted);
- the event loop's longest stall while the probe ran: a task sleeps 1 ms in a loop and the most
  it woke up late is kept (the same task idle for a second first gives the floor);
- memory: RSS after start-up, imports and the server listening, before the first probe (the
  steady state), and the peak (VmHWM, reset to the current RSS at that moment through
  /proc/self/clear_refs) over the probes; RSS after them;
- the figures served: whm_mail_queue_messages must be N, and no whm_api_errors.

A last row (unless --no-all-families) is 50,000 messages with every family on (the same small
server's mailboxes, senders, mail flow, settings, logins besides): the whole exporter's memory.
Figures only: the targets are printed beside them, nothing fails on a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
TOKEN = "queue-token"
TARGET = "bench"
FUNCTION = "fetch_mail_queue"
SIZES = (10_000, 50_000, 100_000, 200_000)
ALL_ON_SIZE = 50_000
# The targets of issue 26: stall, memory above the steady state at 100,000, peak RSS at 50,000.
STALL_TARGET_MS = 50.0
ABOVE_TARGET_MB, ABOVE_AT = 100.0, 100_000
PEAK_TARGET_MB, PEAK_AT = 300.0, 50_000
TICK = 0.001
_SAMPLE = re.compile(r"^(whm_mail_queue_messages|whm_api_errors)(?:\{[^}]*\})? (\S+)$", re.M)


# --- the exporter's side (a process of its own) ---------------------------------------------


def _status_mb(key: str) -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(rf"{key}:\s+(\d+) kB", status)[1]) / 1024  # type: ignore[index]


def _reset_peak() -> bool:
    """VmHWM back to the current RSS (Linux 4.0+); False when the system refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class Lag:
    """How late a 1 ms sleep wakes up, at most, since the last :meth:`take`."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.ticks = 0

    async def run(self) -> None:
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(TICK)
            self.worst = max(self.worst, time.perf_counter() - asked - TICK)
            self.ticks += 1

    def take(self) -> tuple[float, int]:
        found = (self.worst, self.ticks)
        self.worst, self.ticks = 0.0, 0
        return found


def document(url: str, all_families: bool) -> dict[str, Any]:
    off = {"enabled": False}
    sections: dict[str, Any] = {}
    if not all_families:
        sections = {
            "mailboxes": off,
            "unique_recipients": off,
            "mail_flow": off,
            "server_settings": off,
            "logins": off,
        }
    module = {
        "token": TOKEN,
        "load_budget": 0,
        **sections,
        "mail_queue": {"refresh": "0s"},
    }
    return {"modules": {"default": module}, "targets": {TARGET: {"url": url}}}


async def _exporter_side(args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp
    from aiohttp import web

    from whm_exporter.cli import tune_gc
    from whm_exporter.config import build_config
    from whm_exporter.exporter import Exporter
    from whm_exporter.metrics import ExporterMetrics
    from whm_exporter.server import make_app

    metrics = ExporterMetrics()
    exporter = Exporter(build_config(document(args.url, args.all_families), {}), metrics, None)
    runner = web.AppRunner(make_app(exporter), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    probe_url = f"http://127.0.0.1:{runner.addresses[0][1]}/probe?target={TARGET}"
    tune_gc()  # as the program does at start

    def call_seconds() -> tuple[float, float]:
        labels = {"target": TARGET, "function": FUNCTION}
        get = metrics.registry.get_sample_value
        total = get("whm_exporter_api_request_duration_seconds_sum", labels) or 0.0
        count = get("whm_exporter_api_request_duration_seconds_count", labels) or 0.0
        return total, count

    lag = Lag()
    ticker = asyncio.create_task(lag.run())
    probes: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session:
        await asyncio.sleep(1.0)
        idle, _ = lag.take()
        startup_peak = _status_mb("VmHWM")
        steady = _status_mb("VmRSS")
        reset = _reset_peak()
        for _ in range(args.probes):
            before = call_seconds()
            lag.take()
            started = time.perf_counter()
            async with session.get(probe_url) as resp:
                text = await resp.text()
            wall = time.perf_counter() - started
            stall, ticks = lag.take()
            after = call_seconds()
            found = _SAMPLE.findall(text)
            probes.append(
                {
                    "status": resp.status,
                    "wall": wall,
                    "call": after[0] - before[0],
                    "calls": after[1] - before[1],
                    "stall": stall,
                    "ticks": ticks,
                    "messages": [float(v) for n, v in found if n == "whm_mail_queue_messages"],
                    "errors": sum(float(v) for n, v in found if n == "whm_api_errors"),
                    "rss": _status_mb("VmRSS"),
                    "peak": _status_mb("VmHWM"),
                }
            )
    ticker.cancel()
    await runner.cleanup()
    await exporter.close()
    return {
        "idle_stall": idle,
        "startup_peak": startup_peak,
        "steady": steady,
        "peak_reset": reset,
        "probes": probes,
    }


def _side(args: argparse.Namespace) -> None:
    from whm_exporter.cli import loop_factory

    # The event loop the program itself would use (uvloop when installed).
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        result = runner.run(_exporter_side(args))
        result["loop"] = type(runner.get_loop()).__module__.split(".")[0]
    print(json.dumps(result))


# --- the driver -------------------------------------------------------------------------------


def _warm(url: str) -> tuple[int, float]:
    """One call, so that the simulator has built its answer: its size and time here."""
    started = time.perf_counter()
    request = Request(
        f"{url}/json-api/{FUNCTION}?api.version=1", headers={"Authorization": f"whm root:{TOKEN}"}
    )
    with urlopen(request, timeout=600) as resp:
        size = len(resp.read())
    return size, time.perf_counter() - started


def _sim_calls(url: str) -> int:
    with urlopen(f"{url}/_sim/stats", timeout=10) as resp:
        return int(json.loads(resp.read())["calls"].get(FUNCTION, 0))


def one(args: argparse.Namespace, messages: int, all_families: bool) -> dict[str, Any]:
    sys.path.insert(0, str(BENCHMARKS))
    from harness import spawn_simulator

    sim, url = spawn_simulator(
        [
            *("--token", TOKEN, "--queue-messages", str(messages)),
            *("--accounts", str(args.accounts), "--users", str(args.users)),
            *("--latency", str(args.latency), "--latency-spread", "0"),
        ]
    )
    try:
        size, build = _warm(url)
        argv = [
            *(sys.executable, __file__, "--side", "exporter", "--url", url),
            *("--probes", str(args.probes)),
            *([] if all_families else ["--no-all-families"]),
        ]
        out = subprocess.run(argv, cwd=ROOT, check=True, capture_output=True, text=True)
        sys.stderr.write(out.stderr)
        result: dict[str, Any] = json.loads(out.stdout)
        result["sim_calls"] = _sim_calls(url) - 1
    finally:
        sim.terminate()
        sim.wait()
    result.update(messages=messages, all_families=all_families, bytes=size, build=build)
    return result


def row(r: dict[str, Any], probes: int) -> str:
    ps = r["probes"]
    calls = [p["call"] for p in ps]
    later = statistics.median(calls[1:]) if len(calls) > 1 else calls[0]
    stall = max(p["stall"] for p in ps) * 1000
    peak = max(p["peak"] for p in ps)
    above = peak - r["steady"]
    n = r["messages"]
    exact = (
        all(
            p["status"] == 200 and p["messages"] == [n] and not p["errors"] and p["calls"] == 1
            for p in ps
        )
        and r["sim_calls"] == probes
    )
    verdicts = [f"stall {'met' if stall <= STALL_TARGET_MS else 'MISSED'}"]
    if n == ABOVE_AT and not r["all_families"]:
        verdicts.append(
            f"+{ABOVE_TARGET_MB:g} MB {'met' if above <= ABOVE_TARGET_MB else 'MISSED'}"
        )
    if n == PEAK_AT:
        verdicts.append(f"{PEAK_TARGET_MB:g} MB {'met' if peak <= PEAK_TARGET_MB else 'MISSED'}")
    return (
        f"{n:>8,} {'all' if r['all_families'] else 'queue':>6} {r['bytes'] / 1e6:>6.1f}"
        f" {calls[0]:>7.2f} {later:>7.2f} {max(p['wall'] for p in ps):>7.2f}"
        f" {stall:>7.1f} {r['steady']:>7.1f} {peak:>7.1f} {above:>+7.1f}"
        f" {ps[-1]['rss']:>7.1f} {'yes' if exact else 'NO':>5}  {', '.join(verdicts)}"
    )


def drive(args: argparse.Namespace) -> None:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"# whm-exporter queue benchmark  {platform.node()}  python {platform.python_version()}"
        f"  {os.cpu_count()} cpus  load {load}  {datetime.now(UTC):%Y-%m-%d %H:%M}Z"
    )
    print(
        f"# simulator: {args.accounts} addresses, {args.users} users, latency {args.latency:g}"
        f" (exim time {'20 us a message' if args.latency else 'none'}); exporter: queue and"
        f" inventory only, mail_queue.refresh 0s, load_budget 0; {args.probes} probes a size",
        flush=True,
    )
    runs = [(n, False) for n in args.sizes]
    if args.all_families:
        runs.append((ALL_ON_SIZE, True))
    results = []
    for n, all_on in runs:
        r = one(args, n, all_on)
        results.append(r)
        stalls = " ".join(f"{p['stall'] * 1000:.1f}" for p in r["probes"])
        print(
            f"#  {n:,} {'all families' if all_on else 'queue'}: answer built by the simulator in"
            f" {r['build']:.2f}s; loop {r['loop']}; idle stall floor {r['idle_stall'] * 1000:.2f}"
            f" ms; start-up peak {r['startup_peak']:.1f} MB; peak reset"
            f" {'yes' if r['peak_reset'] else 'NO (peak since start)'}; stalls ms"
            f" {stalls}",
            flush=True,
        )
    print(
        f"{'messages':>8} {'on':>6} {'MB':>6} {'call1 s':>7} {'call s':>7} {'probe s':>7}"
        f" {'stall':>7} {'steady':>7} {'peak':>7} {'above':>7} {'after':>7} {'exact':>5}"
    )
    for r in results:
        print(row(r, args.probes))
    print(
        f"# MB: the answer's size (10^6 bytes); call1/call: fetch_mail_queue's time (the"
        f" exporter's histogram), first probe / median of the others; probe: the longest /probe;"
        f" stall: the event loop's longest, ms (target <= {STALL_TARGET_MS:g}); steady, peak,"
        f" above, after: RSS MiB before the first probe, its high-water mark over the probes,"
        f" their difference (target <= {ABOVE_TARGET_MB:g} at {ABOVE_AT:,}), RSS after the"
        f" last (peak target <= {PEAK_TARGET_MB:g} at {PEAK_AT:,}); exact:"
        f" whm_mail_queue_messages = N at every probe, no API error, one call a probe"
    )
    print(f"# load at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="queue messages")
    p.add_argument("--probes", type=int, default=3, help="probes a size, each reading the queue")
    p.add_argument("--accounts", type=int, default=400, help="the simulated server's addresses")
    p.add_argument("--users", type=int, default=100, help="its cPanel users")
    p.add_argument("--latency", type=float, default=0.0, help="the simulator's --latency")
    p.add_argument(
        "--no-all-families",
        dest="all_families",
        action="store_false",
        help=f"no last row with every family on at {ALL_ON_SIZE:,}",
    )
    p.add_argument("--side", choices=["exporter"], help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.side:
        _side(args)
    else:
        drive(args)


if __name__ == "__main__":
    main()
