"""What every benchmark needs: the simulated server and its size, the exporter's config with
every time scaled, the simulator and exporter as processes (each on a port the system chose,
read from what the process says it bound), a Prometheus-like scraper that reads a probe's own
figures, and the simulator's call counts (``/_sim/stats``).

The benchmarks (freshness.py, load_budget.py, restart.py, bench.py) import it from beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from whm_exporter.config import (  # noqa: E402
    DiscoveryConfig,
    MailboxesConfig,
    MailFlowConfig,
    ModuleConfig,
    UniqueRecipientsConfig,
)
from whm_exporter.simulator.dataset import Dataset  # noqa: E402

TOKEN = "freshness-token"
TARGET = "bench"
SPAMMER_RATE = 2000
# What Prometheus 3 sends by default: its DefaultScrapeProtocols with q-values as
# scrape/scrape.go acceptHeader() writes them, UTF-8 names allowed (prometheus/prometheus).
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)
MAILBOX = "get_mailbox_status_list"
SENDERS = "get_unique_recipient_count_per_sender_for_user"
TOTALS = "get_unique_sender_recipient_count_per_user"
# The served data; listaccts and list_pops_for age with discovery.refresh (10m), by design.
DATA_FUNCTIONS = (MAILBOX, SENDERS, TOTALS)
_SAMPLE = re.compile(
    r"^(whm_(?:up|probe_\w+|api_calls|api_calls_abandoned|api_errors|discovered_\w+"
    r"|discovery_complete|data_items|data_age_seconds))(?:\{([^}]*)\})? (\S+)$",
    re.M,
)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
_ACCOUNT = re.compile(r'^whm_mailbox_messages\{[^}]*account="([^"]*)"', re.M)
_SENDER = re.compile(r'^whm_sender_unique_recipients\{[^}]*sender="([^"]*)"', re.M)


# --- the scenario -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """A simulated WHM server and what a first pass over it costs, counted as the exporter's
    config asks (suspended users skipped, main mailboxes included, its windows)."""

    users: int
    accounts: int
    folders: int
    seed: int

    @property
    def dataset(self) -> Dataset:
        return Dataset(
            seed=self.seed, accounts=self.accounts, users=self.users, folders=self.folders
        )

    def active(self) -> list[str]:
        ds = self.dataset
        return [u for u in ds.user_names if not ds.suspended(u)]

    def mailboxes(self) -> int:
        return sum(len(self.dataset.pops[u]) + 1 for u in self.active())

    def first_pass_calls(self, module: ModuleConfig) -> int:
        users = len(self.active())
        recipients = len(module.unique_recipients.windows)
        server_wide = recipients * module.unique_recipients.per_user_totals
        server_wide += len(module.mail_flow.windows) * module.mail_flow.enabled
        # listaccts + totals and mail flow + list_pops_for + mailboxes + senders
        return 1 + server_wide + users + self.mailboxes() + users * recipients

    def hot_users(self, threshold: int) -> set[str]:
        """Users whose per-user total reaches the priority threshold, and the heavy sender's
        (its mail flow trips cPanel's limits): their senders go first at every probe."""
        ds = self.dataset
        return {u for u in self.active() if ds.user_total(u, 3600) >= threshold} | {
            ds.heavy_user or ""
        }

    def quiet_users(self, threshold: int) -> list[str]:
        """Users nothing makes the exporter look at first, until a spammer appears among them."""
        hot = self.hot_users(threshold)
        return [u for u in self.active() if self.dataset.pops[u] and u not in hot]


def _seconds(value: float) -> str:
    """A duration in the config's Prometheus syntax (milliseconds are enough here)."""
    return f"{max(1, round(value * 1000))}ms" if value else "0s"


def exporter_config(url: str, args: argparse.Namespace, refresh: float | None) -> dict[str, Any]:
    """The module's defaults with every time scaled; ``refresh`` (both functions) when given,
    ``args.load_budget`` when not None."""
    s = args.scale
    mb, ur, mf = MailboxesConfig(), UniqueRecipientsConfig(), MailFlowConfig()
    mailboxes: dict[str, Any] = {
        "refresh": _seconds(mb.refresh * s),
        "max_age": _seconds(mb.max_age * s),
    }
    recipients: dict[str, Any] = {
        "refresh": _seconds(ur.refresh * s),
        "max_age": _seconds(ur.max_age * s),
        "priority_threshold": args.priority_threshold,
    }
    mail_flow: dict[str, Any] = {
        "refresh": _seconds(mf.refresh * s),
        "max_age": _seconds(mf.max_age * s),
    }
    if refresh is not None:
        # docs/configuration.md, two scrapers: every refresh a little below the scrape interval.
        mailboxes["refresh"] = recipients["refresh"] = mail_flow["refresh"] = _seconds(refresh)
    module: dict[str, Any] = {
        "token_env": "WHM_BENCH_TOKEN",
        "max_concurrency": args.concurrency,
        "timeout": _seconds(ModuleConfig.model_fields["timeout"].default * s),
        "discovery": {"refresh": _seconds(DiscoveryConfig().refresh * s)},
        "mailboxes": mailboxes,
        "unique_recipients": recipients,
        "mail_flow": mail_flow,
    }
    if args.load_budget is not None:
        module["load_budget"] = args.load_budget
    return {"modules": {"default": module}, "targets": {TARGET: {"url": url}}}


# --- processes --------------------------------------------------------------------------------

# What each process prints once it serves: the simulator on stdout, the exporter in its log.
_SIM_SERVING = re.compile(r"WHM simulator serving (\S+)")
_EXPORTER_LISTENING = re.compile(r"msg=listening address=(\S+)")
_START_SECONDS = 20.0


def _bound_url(proc: subprocess.Popen[bytes], lines: IO[bytes], pattern: re.Pattern[str]) -> str:
    """The address the process says it bound (it was given port 0): read line by line until
    it says so, or fail with what it printed when it exits first."""
    seen: list[str] = []
    deadline = time.monotonic() + _START_SECONDS
    while time.monotonic() < deadline:
        line = lines.readline().decode(errors="replace")
        if not line:
            if proc.poll() is not None:
                raise SystemExit(f"{proc.args!r} exited with {proc.returncode}: {seen[-5:]}")
            time.sleep(0.05)  # a log file read before the process wrote more
            continue
        seen.append(line.rstrip())
        found = pattern.search(line)
        if found:
            address = found[1]
            return address if "://" in address else f"http://{address}"
    proc.kill()
    raise SystemExit(f"{proc.args!r} did not start within {_START_SECONDS:g}s: {seen[-5:]}")


def spawn_simulator(flags: Sequence[str]) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m whm_exporter.simulator`` with ``flags``, on a port the system chooses."""
    argv = [sys.executable, "-m", "whm_exporter.simulator", "--listen", "127.0.0.1:0", *flags]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    url = _bound_url(proc, proc.stdout, _SIM_SERVING)
    # Nothing else is read from its stdout: let it go nowhere rather than fill the pipe.
    proc.stdout.close()
    return proc, url


def start_simulator(
    server: Server, args: argparse.Namespace, extra: Sequence[str] = ()
) -> tuple[subprocess.Popen[bytes], str]:
    """The simulator of ``server`` with the scenario's latency, and ``extra`` flags."""
    return spawn_simulator(
        [
            *("--token", TOKEN, "--seed", str(server.seed), "--folders", str(server.folders)),
            *("--users", str(server.users), "--accounts", str(server.accounts)),
            *("--latency", str(args.latency * args.scale), "--latency-spread", str(args.spread)),
            *("--capacity", str(args.capacity)),
            *extra,
        ]
    )


@dataclass
class Exporter:
    """``python -m whm_exporter`` (so its RSS is its own), its log kept in a file."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    @classmethod
    def start(cls, config_path: Path, log: Path, extra: Sequence[str] = ()) -> Exporter:
        """Start it on ``config_path`` with ``extra`` flags, its log appended to ``log``."""
        offset = log.stat().st_size if log.exists() else 0
        with log.open("ab") as err:
            proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "whm_exporter", "--config.file", str(config_path)),
                    *("--web.listen-address", "127.0.0.1:0", *extra),
                ],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env={**os.environ, "WHM_BENCH_TOKEN": TOKEN},
            )
        with log.open("rb") as lines:
            lines.seek(offset)
            url = _bound_url(proc, lines, _EXPORTER_LISTENING)
        return cls(proc, url, log)

    @classmethod
    def with_config(cls, config: dict[str, Any], workdir: Path, name: str) -> Exporter:
        path = workdir / f"{name}.yml"
        path.write_text(json.dumps(config, indent=1))  # JSON is YAML
        return cls.start(path, workdir / f"{name}.log")

    def _status_mb(self, key: str) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(rf"{key}:\s+(\d+) kB", status)[1]) / 1024  # type: ignore[index]

    def peak_rss_mb(self) -> float:
        return self._status_mb("VmHWM")

    def rss_mb(self) -> float:
        return self._status_mb("VmRSS")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def warnings(self) -> list[str]:
        lines = self.log.read_text(errors="replace").splitlines()
        # The exporter spells its levels as Prometheus' programs do: warn, error.
        return [line for line in lines if re.search(r"\blevel=(warn|error)\b", line)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


# --- scraping ---------------------------------------------------------------------------------


@dataclass
class Probe:
    scraper: str
    at: float  # start, seconds since the first scrape
    http: float  # wall time of the request, rendering included
    status: int
    duration: float = math.nan  # whm_probe_duration_seconds
    deadline: bool = False
    calls: int = 0
    sender_calls: int = 0  # of the calls, per-sender breakdowns
    abandoned: int = 0
    items: dict[tuple[str, str], int] = field(default_factory=dict)
    ages: dict[str, float] = field(default_factory=dict)
    discovery_complete: bool = False
    accounts: int = 0  # distinct addresses in whm_mailbox_messages
    senders: frozenset[str] = frozenset()
    rss: float = 0.0  # the exporter's resident memory right after the answer, MB

    @property
    def answered(self) -> float:
        return self.at + self.http

    def served(self, function: str) -> tuple[int, int]:
        fresh, kept = self.items.get((function, "fresh"), 0), self.items.get((function, "kept"), 0)
        return fresh + kept, fresh + kept + self.items.get((function, "missing"), 0)

    def oldest(self) -> float:
        return max((self.ages.get(f, 0.0) for f in DATA_FUNCTIONS), default=0.0)


def covers(p: Probe, expected: int) -> bool:
    """Whether the probe served every mailbox of the server (``expected`` addresses)."""
    served, known = p.served(MAILBOX)
    return p.discovery_complete and served == known == expected and p.accounts == expected


def read_probe(probe: Probe, text: str) -> None:
    """The probe's own figures, from the exposition; a repeated series is an error."""
    seen: set[tuple[str, str]] = set()
    for name, labels, value in _SAMPLE.findall(text):
        if (name, labels) in seen:
            raise SystemExit(f"duplicate series {name}{{{labels}}} in a probe's answer")
        seen.add((name, labels))
        lab = dict(_LABEL.findall(labels))
        v = float(value)
        match name:
            case "whm_probe_duration_seconds":
                probe.duration = v
            case "whm_probe_deadline_exceeded":
                probe.deadline = v == 1
            case "whm_api_calls":
                probe.calls += int(v)
                probe.sender_calls += int(v) if lab["function"] == SENDERS else 0
            case "whm_api_calls_abandoned":
                probe.abandoned += int(v)
            case "whm_discovery_complete":
                probe.discovery_complete = v == 1
            case "whm_data_items":
                probe.items[(lab["function"], lab["state"])] = int(v)
            case "whm_data_age_seconds":
                probe.ages[lab["function"]] = v
    probe.accounts = len(set(_ACCOUNT.findall(text)))
    probe.senders = frozenset(_SENDER.findall(text))


class Scraper:
    """One Prometheus scrape loop: a tick every ``interval`` from ``first``, each scrape
    with the scrape timeout announced and awaited (a late answer is flagged, not dropped, so
    its figures still count)."""

    def __init__(
        self,
        name: str,
        session: aiohttp.ClientSession,
        exporter: Exporter,
        args: argparse.Namespace,
    ) -> None:
        self.name = name
        self.session = session
        self.exporter = exporter
        self.url = f"{exporter.url}/probe?target={TARGET}"
        self.interval = args.interval * args.scale
        self.timeout = args.timeout * args.scale
        self.headers = {
            "Accept": PROMETHEUS_ACCEPT,
            "Accept-Encoding": "gzip",
            "User-Agent": "Prometheus/3.5.0",
            "X-Prometheus-Scrape-Timeout-Seconds": f"{self.timeout:g}",
        }

    async def scrape(self, t0: float) -> Probe:
        started = time.monotonic()
        async with self.session.get(
            self.url,
            headers=self.headers,
            timeout=aiohttp.ClientTimeout(total=self.timeout + 60),
        ) as resp:
            text = await resp.text()
        probe = Probe(self.name, started - t0, time.monotonic() - started, resp.status)
        probe.rss = self.exporter.rss_mb()
        if resp.status == 200:
            read_probe(probe, text)
        return probe

    async def run(self, t0: float, first: float, go_on: Callable[[Probe], bool]) -> None:
        """Scrape at ``first``, ``first + interval``, ... until ``go_on`` says stop."""
        tick = first
        while True:
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
            if not go_on(await self.scrape(t0)):
                return
            tick += self.interval
            while tick < time.monotonic():  # a scrape longer than the interval skips a tick
                tick += self.interval


async def sim_stats(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(f"{url}/_sim/stats") as resp:
        return await resp.json()  # type: ignore[no-any-return]


@dataclass
class Spammer:
    user: str
    address: str = ""
    appeared: float = math.nan  # seconds since the first scrape
    probes: int = 0  # probes started since it appeared, up to the first that reports it
    reported: float = math.nan


def server_arguments(
    p: argparse.ArgumentParser, users: int = 1500, addresses: int = 5, latency: float = 0.1
) -> None:
    """The simulated server's size and call time, as every scraping benchmark takes them."""
    p.add_argument("--users", type=int, default=users, help="cPanel users (every tenth suspended)")
    p.add_argument("--addresses", type=int, default=addresses, help="addresses per user")
    p.add_argument("--folders", type=int, default=5, help="folders per mailbox")
    p.add_argument("--latency", type=float, default=latency, help="median seconds per WHM call")
    p.add_argument("--spread", type=float, default=0.3, help="lognormal sigma of the call time")
    p.add_argument("--capacity", type=int, default=0, help="calls WHM serves at once (0: any)")
    p.add_argument("--seed", type=int, default=1, help="the simulated server's data")


def scrape_arguments(p: argparse.ArgumentParser) -> None:
    """How the exporter is configured and scraped, as every scraping benchmark takes them."""
    p.add_argument("--concurrency", type=int, default=8, help="max_concurrency (C)")
    p.add_argument("--interval", type=float, default=30.0, help="scrape interval, seconds")
    p.add_argument("--timeout", type=float, default=10.0, help="scrape timeout, seconds")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every time by this")
    p.add_argument(
        "--priority-threshold",
        type=int,
        default=100,
        help="unique_recipients.priority_threshold; spammers go to users below it",
    )
    p.add_argument(
        "--load-budget", type=float, default=None, help="the module's load_budget (default: its)"
    )
