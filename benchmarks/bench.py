"""How close a probe comes to the fastest possible one, and what it costs.

    python benchmarks/bench.py           # 2,000 accounts x 8 folders, L=20ms, C=16
    python benchmarks/bench.py --accounts 10000 --max-senders 5 \\
        --include-folders "INBOX|INBOX[.]Sent" --series-budget 50000
    python benchmarks/bench.py --soak 300 --latency 0
    python benchmarks/bench.py --render --accounts 20000     # the rendering path alone

The simulator runs in a process of its own (its CPU is not the exporter's). Each measured side
runs in a fresh process too, so peak RSS belongs to that side alone:

- exporter: the real probe path (discovery warmed up, then probe -> snapshot -> metrics ->
  exposition text), several runs;
- floor: the same WHM calls through WHMClient alone at the same concurrency, JSON decoded and
  thrown away: what any exporter must at least spend.

The latency bound is ceil(calls / C) * L. Figures only: no pass/fail, timings are the reader's.

``--render`` measures the rendering path alone (families -> bytes -> HTTP response), apart from
collection: families shaped like a probe's (two mailbox series per folder, senders, per-user
totals) are built in a fresh process, then served through the exporter's own answer function to
a client in the same process that reads and discards them; once per format and encoding. It
prints the wall and CPU time of an answer, its size, and the process' RSS before and its peak.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Any
from urllib.request import urlopen

from harness import ROOT, spawn_simulator

TOKEN = "bench-token"
OPENMETRICS = "application/openmetrics-text;version=1.0.0"
# The allocator reaches its working size over the first probes; growth is counted after them.
SOAK_WARMUP = 10


def _rss_mb() -> float:
    """Resident memory after a full collection (outside any timed region), with the count of
    live Python memory blocks: garbage awaiting the collector is not a leak."""
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _blocks() -> int:
    return sys.getallocatedblocks()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _document(args: argparse.Namespace, url: str) -> dict[str, Any]:
    # Every answer asked at every probe: each run measures a whole collection.
    mailboxes: dict[str, Any] = {"refresh": "0s"}
    if args.include_folders:
        mailboxes["include_folders"] = [args.include_folders]
    return {
        "modules": {
            "default": {
                "token": TOKEN,
                "max_concurrency": args.concurrency,
                # The latency bound is that of calls at max_concurrency: no load budget pacing
                # the refreshes (benchmarks/load_budget.py measures the budget).
                "load_budget": 0,
                "timeout": "10m",
                "request_timeout": "1m",
                "mailboxes": mailboxes,
                "unique_recipients": {"max_senders_per_user": args.max_senders},
            }
        },
        "targets": {"bench": {"url": url}},
    }


async def _exporter_side(args: argparse.Namespace) -> dict[str, Any]:
    url = args.url
    from whm_exporter.cli import tune_gc
    from whm_exporter.config import build_config
    from whm_exporter.exporter import Exporter
    from whm_exporter.exposition import write
    from whm_exporter.metrics import ExporterMetrics, families

    exporter = Exporter(build_config(_document(args, url), {}), ExporterMetrics(), None)
    target = exporter.targets["bench"]
    tune_gc()  # as the program does at start
    await exporter.probe(target, 600)  # discovery, and the mailbox function learned
    runs = []
    rss_start, blocks_start = _rss_mb(), _blocks()
    rss_steady, blocks_steady = rss_start, blocks_start
    for i in range(args.soak or args.runs):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        snapshot = await exporter.probe(target, 600)
        wall_probe = time.perf_counter() - wall0
        r0 = time.perf_counter()
        # Chunk by chunk, as /probe streams it.
        fams = families(snapshot)
        size = sum(len(chunk) for chunk in write(fams))
        render = time.perf_counter() - r0
        runs.append(
            {
                "wall": time.perf_counter() - wall0,
                "wall_probe": wall_probe,
                "cpu": time.process_time() - cpu0,
                "render": render,
                "calls": sum(snapshot.calls.values()),
                "errors": sum(snapshot.errors.values()),
                "series": sum(1 for f in fams for _ in f.samples),
                "bytes": size,
            }
        )
        if i + 1 == SOAK_WARMUP:
            rss_steady, blocks_steady = _rss_mb(), _blocks()
        if args.soak and (i + 1) % 50 == 0:
            print(
                f"  soak {i + 1}/{args.soak}: rss {_rss_mb():.1f} MB, {_blocks()} blocks",
                file=sys.stderr,
            )
    result = {
        "runs": runs,
        "rss_start": rss_start,
        "rss_steady": rss_steady,
        "rss_end": _rss_mb(),
        "blocks": [blocks_start, blocks_steady, _blocks()],
    }
    # Two overlapping probes of one target: WHM must see one probe's calls.
    before = _sim_stats(url)["total"]
    await asyncio.gather(exporter.probe(target, 600), exporter.probe(target, 600))
    result["overlap_calls"] = _sim_stats(url)["total"] - before
    await exporter.close()
    return result


async def _floor_side(args: argparse.Namespace) -> dict[str, Any]:
    """The calls a probe makes (as the exporter's plan makes them), through the client alone."""
    from pydantic import SecretStr

    from whm_exporter.config import TLSConfig
    from whm_exporter.whm.client import WHMClient, new_session

    url = args.url
    session = new_session(TLSConfig(), args.concurrency)
    client = WHMClient(
        session, url, "root", SecretStr(TOKEN), request_timeout=60, max_response_bytes=4 << 20
    )
    listed = await client.call("listaccts", {"want": "user,suspended"})
    users = [a["user"] for a in listed["data"]["acct"] if not int(a["suspended"])]
    pops = await asyncio.gather(*(client.call("list_pops_for", {"user": u}) for u in users))
    plan: list[tuple[str, dict[str, str | int]]] = []
    end = int(time.time()) - 60
    for user, answer in zip(users, pops, strict=True):
        for account in (*answer["data"]["pops"], user):
            plan.append(("get_mailbox_status_list", {"account": account}))
        plan.append(
            (
                "get_unique_recipient_count_per_sender_for_user",
                {"user": user, "start_time": end - 3600, "end_time": end},
            )
        )
    plan.append(
        ("get_unique_sender_recipient_count_per_user", {"start_time": end - 3600, "end_time": end})
    )
    bound = asyncio.Semaphore(args.concurrency)

    async def one(function: str, params: dict[str, str | int]) -> None:
        async with bound:
            await client.call(function, params)

    runs = []
    for _ in range(args.runs):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(f, p) for f, p in plan))
        runs.append(
            {
                "wall": time.perf_counter() - wall0,
                "cpu": time.process_time() - cpu0,
                "calls": len(plan),
            }
        )
    await session.close()
    return {"runs": runs}


FOLDERS = ("INBOX", "INBOX.Sent", "INBOX.Drafts", "INBOX.Trash", "INBOX.Junk", "INBOX.Archive")


def _synthetic_families(args: argparse.Namespace) -> list[Any]:
    """A probe's families for ``accounts`` addresses over ``users`` users (plus each user's
    main mailbox) with ``folders`` folders, the label tuples shared as a Snapshot shares them."""
    from whm_exporter.series import Family

    folders = [FOLDERS[i] if i < len(FOLDERS) else f"INBOX.Folder{i}" for i in range(args.folders)]
    keys: list[tuple[str, str, str]] = []
    users = [f"user{u:05d}" for u in range(args.users)]
    for u, user in enumerate(users):
        accounts = [f"box{i:06d}@{user}.example" for i in range(u, args.accounts, args.users)]
        for account in (*accounts, user):
            keys += [(user, account, folder) for folder in folders]
    senders = [((user, f"s{i}@{user}.example", "1h"), 10 * i) for user in users for i in range(5)]
    return [
        Family("whm_up", "1 if WHM answered.", (), [((), 1)]),
        Family("whm_probe_duration_seconds", "Wall time.", (), [((), 12.345678)]),
        Family(
            "whm_mailbox_messages",
            "Messages in one mailbox folder.",
            ("user", "account", "mailbox"),
            [(k, i % 5000) for i, k in enumerate(keys)],
        ),
        Family(
            "whm_mailbox_size_bytes",
            "Virtual size of one mailbox folder (vsize), in bytes.",
            ("user", "account", "mailbox"),
            [(k, i * 40_961) for i, k in enumerate(keys)],
        ),
        Family(
            "whm_sender_unique_recipients",
            "Unique remote recipients the sender reached in the window.",
            ("user", "sender", "window"),
            senders,
        ),
        Family(
            "whm_user_unique_recipients",
            "Unique remote recipients of the user's senders in the window.",
            ("user", "window"),
            [((user, "1h"), 7) for user in users],
        ),
    ]


async def _render_side(args: argparse.Namespace) -> dict[str, Any]:
    from aiohttp import ClientSession, web

    from whm_exporter.server import _exposition

    fams = _synthetic_families(args)
    series = sum(1 for f in fams for _ in f.samples)
    rss_before, peak_before = _rss_mb(), _peak_rss_mb()

    async def answer(request: web.Request) -> web.StreamResponse:
        return await _exposition(request, fams)

    app = web.Application()
    app.router.add_get("/", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    headers = {"Accept": OPENMETRICS if args.format == "openmetrics" else "text/plain"}
    if args.gzip:
        headers["Accept-Encoding"] = "gzip"
    runs = []
    async with ClientSession(auto_decompress=False, skip_auto_headers=["Accept-Encoding"]) as s:
        for _ in range(args.runs):
            cpu0, wall0 = time.process_time(), time.perf_counter()
            size = 0
            async with s.get(url, headers=headers) as resp:
                async for chunk in resp.content.iter_chunked(1 << 16):
                    size += len(chunk)
            runs.append(
                {
                    "wall": time.perf_counter() - wall0,
                    "cpu": time.process_time() - cpu0,
                    "bytes": size,
                }
            )
    await runner.cleanup()
    return {"runs": runs, "series": series, "rss_before": rss_before, "peak_before": peak_before}


def _render_report(args: argparse.Namespace) -> None:
    print(
        f"# rendering path: accounts={args.accounts} users={args.users} folders={args.folders}"
        f" runs={args.runs} (peak: the process' RSS high-water mark; before: families built)"
    )
    print(
        f"{'format':>12} {'gzip':>5} {'series':>8} {'MB sent':>8} {'wall s':>7} {'cpu s':>6}"
        f" {'RSS before':>10} {'peak before':>11} {'peak':>6}"
    )
    for fmt in ("text", "openmetrics"):
        for gz in (False, True):
            extra = ["--format", fmt] + (["--gzip"] if gz else [])
            r = _run_side(args, "render", "", extra)
            print(
                f"{fmt:>12} {'yes' if gz else 'no':>5} {r['series']:>8}"
                f" {r['runs'][0]['bytes'] / 2**20:>8.1f} {_median(r['runs'], 'wall'):>7.3f}"
                f" {_median(r['runs'], 'cpu'):>6.3f} {r['rss_before']:>10.1f}"
                f" {r['peak_before']:>11.1f} {r['peak_rss']:>6.1f}"
            )


def _sim_stats(url: str) -> dict[str, Any]:
    with urlopen(f"{url}/_sim/stats", timeout=10) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def _side(args: argparse.Namespace) -> None:
    from whm_exporter.cli import loop_factory

    sides = {"exporter": _exporter_side, "floor": _floor_side, "render": _render_side}
    # The event loop the program itself would use (uvloop when installed) unless --no-uvloop.
    with asyncio.Runner(loop_factory=None if args.no_uvloop else loop_factory()) as runner:
        result = runner.run(sides[args.side](args))
        result["loop"] = type(runner.get_loop()).__module__.split(".")[0]
    result["peak_rss"] = _peak_rss_mb()
    print(json.dumps(result))


def _start_simulator(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], str]:
    return spawn_simulator(
        [
            *("--token", TOKEN, "--accounts", str(args.accounts), "--users", str(args.users)),
            *("--folders", str(args.folders), "--latency", str(args.latency)),
        ]
    )


def _run_side(
    args: argparse.Namespace, side: str, url: str, extra: tuple[str, ...] | list[str] = ()
) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--side", side, "--url", url, *sys.argv[1:], *extra]
    out = subprocess.run(argv, cwd=ROOT, check=True, capture_output=True, text=True)
    sys.stderr.write(out.stderr)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--accounts", type=int, default=2000)
    p.add_argument("--users", type=int, default=0, help="cPanel users (default accounts/10)")
    p.add_argument("--folders", type=int, default=8)
    p.add_argument("--latency", type=float, default=0.02, help="seconds per WHM call")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--max-senders", type=int, default=50)
    p.add_argument("--include-folders", default="", help="folder regex to keep (series budget)")
    p.add_argument("--series-budget", type=int, default=0, help="say whether the output fits")
    p.add_argument("--soak", type=int, default=0, help="consecutive probes; prints RSS start/end")
    p.add_argument(
        "--no-uvloop", action="store_true", help="asyncio's event loop even if uvloop is installed"
    )
    p.add_argument("--render", action="store_true", help="the rendering path alone (see above)")
    p.add_argument("--format", choices=["text", "openmetrics"], help=argparse.SUPPRESS)
    p.add_argument("--gzip", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--side", choices=["exporter", "floor", "render"], help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.users = args.users or max(1, args.accounts // 10)
    if args.side:
        _side(args)
        return
    if args.render:
        _render_report(args)
        return

    proc, url = _start_simulator(args)
    try:
        print(
            f"# whm-exporter benchmark  {platform.node()}  python {platform.python_version()}"
            f"  {os.cpu_count()} cpus"
        )
        print(
            f"# accounts={args.accounts} users={args.users} folders={args.folders}"
            f" latency={args.latency * 1000:.0f}ms concurrency={args.concurrency}"
            f" max_senders={args.max_senders} include_folders={args.include_folders or '-'}"
        )
        ex = _run_side(args, "exporter", url)
        if args.soak:
            runs = ex["runs"]
            print(
                f"soak: {len(runs)} probes, median wall {_median(runs, 'wall'):.3f}s,"
                f" errors {sum(r['errors'] for r in runs)}"
            )
            print(
                f"RSS: start {ex['rss_start']:.1f} MB, after probe {SOAK_WARMUP}"
                f" {ex['rss_steady']:.1f} MB, end {ex['rss_end']:.1f} MB,"
                f" peak {ex['peak_rss']:.1f} MB"
            )
            print(
                f"RSS growth from probe {SOAK_WARMUP} to {len(runs)}:"
                f" {ex['rss_end'] - ex['rss_steady']:+.1f} MB"
                f" (from start: {ex['rss_end'] - ex['rss_start']:+.1f} MB)"
            )
            start, steady, end = ex["blocks"]
            print(
                f"live Python blocks: start {start}, after probe {SOAK_WARMUP} {steady}, end {end}"
            )
            return
        fl = _run_side(args, "floor", url)
    finally:
        proc.terminate()
        proc.wait()
    calls = ex["runs"][0]["calls"]
    bound = math.ceil(calls / args.concurrency) * args.latency
    # With --latency 0 there is no latency bound: the ratios print as nan.
    per_bound = 1 / bound if bound else math.nan
    print(
        f"{'run':>4} {'wall s':>8} {'bound':>7} {'ratio':>6} {'cpu s':>7} {'cpu/call ms':>11}"
        f" {'series':>8} {'render s':>9} {'floor wall':>10} {'floor cpu':>9}"
    )
    for i, (e, f) in enumerate(zip(ex["runs"], fl["runs"], strict=True)):
        print(
            f"{i + 1:>4} {e['wall']:>8.3f} {bound:>7.3f} {e['wall'] * per_bound:>6.3f}"
            f" {e['cpu']:>7.3f}"
            f" {e['cpu'] / e['calls'] * 1000:>11.3f} {e['series']:>8} {e['render']:>9.3f}"
            f" {f['wall']:>10.3f} {f['cpu']:>9.3f}"
        )
    wall, cpu = _median(ex["runs"], "wall"), _median(ex["runs"], "cpu")
    fwall, fcpu = _median(fl["runs"], "wall"), _median(fl["runs"], "cpu")
    print(
        f"median: calls {calls}, wall {wall:.3f}s = {wall * per_bound:.3f} x bound {bound:.3f}s"
        f" = {wall / fwall:.3f} x floor wall {fwall:.3f}s"
    )
    print(
        f"median: cpu {cpu:.3f}s ({cpu / calls * 1000:.3f} ms/call) = {cpu / fcpu:.3f} x floor cpu"
        f" {fcpu:.3f}s; render {_median(ex['runs'], 'render'):.3f}s for"
        f" {ex['runs'][0]['series']} series; errors {ex['runs'][0]['errors']}"
    )
    if args.series_budget:
        series = ex["runs"][0]["series"]
        verdict = "within" if series <= args.series_budget else "OVER"
        print(f"series: {series} {verdict} the budget of {args.series_budget}")
    print(f"peak RSS: exporter {ex['peak_rss']:.1f} MB, floor {fl['peak_rss']:.1f} MB")
    print(f"event loop: {ex['loop']}")
    print(f"overlapping probes: WHM saw {ex['overlap_calls']} calls (one probe makes {calls})")


if __name__ == "__main__":
    main()
