"""What keeping the state costs (--storage.path): snapshot size, write time and CPU, split into
the part on the event loop (the capture) and the part in the writer thread (JSON, zlib, the
atomic write), the event loop's longest stall while a write runs, and the load time at start.

    python benchmarks/storage.py                       # 2,000 users x 5 and 2,000 x 10 addresses
    python benchmarks/storage.py --users 200 --addresses 5     # one quick scenario

The state is a real one: every item the scheduler hands out is answered through the real
plan / parse / keep path (calls.plan, Call.keep) with the simulator's answers (Simulator.answer,
no HTTP), for a first pass and a refresh round. Figures only, medians of ``--runs``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import math
import platform
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from multidict import MultiDict

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from whm_exporter import storage  # noqa: E402
from whm_exporter.cli import tune_gc  # noqa: E402
from whm_exporter.collect import calls, persist, schedule  # noqa: E402
from whm_exporter.collect.state import TargetState  # noqa: E402
from whm_exporter.config import build_config  # noqa: E402
from whm_exporter.simulator import Dataset, Simulator  # noqa: E402

SERVER = ("https", "whm.example.com", 2087)


def collected(users: int, addresses: int, folders: int) -> TargetState:
    """A target's state after a first pass and a refresh round, answered offline."""
    sim = Simulator(Dataset(accounts=users * addresses, users=users, folders=folders))
    loaded = build_config({"modules": {"default": {"token": "x"}}, "targets": {}}, env={})
    module = loaded.config.modules["default"]
    state = TargetState(module, {})
    refresh = {kind: 0.0 for kind in schedule.refresh_of(module)}
    now = 1.0
    for _ in range(2):
        state.new_epoch(now)
        while (picked := schedule.next_item(state, now, refresh)) is not None:
            item, urgent = picked
            state.start(item, now, urgent=urgent)
            call = calls.plan(item, state, time.time())
            # An item asked in several calls (the mail DNS in batches) goes on to its last.
            while call is not None:
                params = MultiDict({"api.version": "1"})
                for name, value in call.params.items():
                    for each in value if isinstance(value, tuple) else (value,):
                        params.add(name, str(each))
                call.keep(sim.answer(call.endpoint, params), now)
                call = call.then() if call.then is not None else None
            state.finish(item, True)
            now += 0.0005
    return state


def timed(work: Callable[[], Any]) -> tuple[Any, float, float]:
    """The result, wall seconds and CPU seconds (this process, every thread) of ``work``."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - wall, time.process_time() - cpu


async def stall_during(work: Callable[[], Any]) -> tuple[float, float]:
    """Run ``work`` in a thread as the keeper does; the longest gap between two ticks of the
    event loop meanwhile (what a probe would wait) and the thread's wall time."""
    longest = 0.0
    done = False

    async def tick() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0)
            now = time.perf_counter()
            longest = max(longest, now - last)
            last = now

    ticker = asyncio.create_task(tick())
    started = time.perf_counter()
    await asyncio.to_thread(work)
    took = time.perf_counter() - started
    done = True
    await ticker
    return longest, took


def once(state: TargetState, path: Path, note: Callable[[str, float], None]) -> tuple[int, int]:
    """One write and one load, each step timed; the JSON and file sizes."""
    offset = time.time() - time.monotonic()
    taken, wall, _ = timed(lambda: persist.capture(state, "id", offset))
    note("capture (loop) ms", wall * 1000)
    _, wall, _ = timed(taken.fingerprint)
    note("fingerprint (loop) ms", wall * 1000)
    payload, wall, _ = timed(lambda: persist.dump(taken, "bench", time.time()))
    note("JSON (thread) ms", wall * 1000)
    packed, wall, _ = timed(lambda: storage.pack(payload))
    note(f"zlib level {storage.LEVEL} (thread) ms", wall * 1000)
    for level in (1, 6):
        smaller, wall, _ = timed(functools.partial(zlib.compress, payload, level))
        note(f"  zlib level {level} ms", wall * 1000)
        note(f"  zlib level {level} KiB", len(smaller) / 1024)
    _, wall, _ = timed(lambda: storage.write_atomic(path, packed))
    note("write + fsync + rename (thread) ms", wall * 1000)

    def whole_write() -> None:
        storage.write_atomic(path, storage.pack(persist.dump(taken, "bench", time.time())))

    _, wall, cpu = timed(whole_write)
    note("thread total ms", wall * 1000)
    note("thread total CPU ms", cpu * 1000)
    longest, _ = asyncio.run(stall_during(whole_write))
    note("longest event-loop stall during the write ms", longest * 1000)

    def load() -> TargetState:
        document = persist.parse(storage.unpack(path.read_bytes()))
        return persist.restore(document, state.module, {}, time.monotonic(), time.time())

    back, wall, cpu = timed(load)
    assert back.accounts == state.accounts
    note("load at start ms", wall * 1000)
    note("load at start CPU ms", cpu * 1000)
    return len(payload), len(packed)


def scenario(users: int, addresses: int, folders: int, runs: int) -> dict[str, Any]:
    state = collected(users, addresses, folders)
    rows: dict[str, list[float]] = {}

    def note(name: str, value: float) -> None:
        rows.setdefault(name, []).append(value)

    with tempfile.TemporaryDirectory(prefix="whm-storage-bench-") as directory:
        path = Path(directory) / storage.file_name("bench")
        sizes = [once(state, path, note) for _ in range(runs)]
    return {
        "users": users,
        "addresses": users * addresses,
        "mailboxes": len(state.mailboxes),
        "folders": sum(len(i.answer.records) for i in state.mailboxes.values() if i.answer),
        "items": state.size,
        "JSON KiB": sizes[-1][0] / 1024,
        "file KiB": sizes[-1][1] / 1024,
        **{k: statistics.median(v) for k, v in rows.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, help="one scenario: this many users")
    parser.add_argument("--addresses", type=int, default=5, help="addresses per user")
    parser.add_argument("--folders", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    scenarios = [(args.users, args.addresses)] if args.users else [(2000, 5), (2000, 10)]
    # The collector's thresholds as the exporter sets them.
    tune_gc()
    print(f"# whm-exporter storage benchmark, Python {platform.python_version()},")
    print(f"# {platform.machine()}, {args.folders} folders per mailbox, medians of {args.runs}")
    for users, addresses in scenarios:
        result = scenario(users, addresses, args.folders, args.runs)
        print()
        for key, value in result.items():
            shown = f"{value:,.1f}" if isinstance(value, float) and not math.isnan(value) else value
            print(f"{key:>48}: {shown}")


if __name__ == "__main__":
    main()
