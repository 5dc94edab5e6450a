"""The running exporter: the loaded config, the live targets, reloads and the probe entry point.

HTTP lives in server.py; this module decides which target a request means, with which module,
and whether the token may be sent there at all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from whm_exporter.collect import persist
from whm_exporter.collect.run import Bound
from whm_exporter.collect.state import TargetState
from whm_exporter.config import Loaded, ModuleConfig, load_config
from whm_exporter.metrics import ExporterMetrics
from whm_exporter.probe import probe
from whm_exporter.snapshot import Snapshot
from whm_exporter.storage import Keeper
from whm_exporter.target import Target
from whm_exporter.yamlconf import ConfigError

log = logging.getLogger("whm_exporter")

# Unlisted hosts probed through a module keep their state (bound, caches) in an LRU this large.
MAX_UNLISTED_TARGETS = 256
# Default of --history.limit: recent probes listed on the landing page.
HISTORY_LIMIT = 25
# WHM's own ports (2087 with TLS, 2086 without): the port a URL without one means.
DEFAULT_PORTS = {"https": 2087, "http": 2086}
# A WHM server as the concurrency bound knows it: scheme, lower-case host, port.
Server = tuple[str, str, int]


class BadRequest(Exception):
    """A /probe request that cannot be served: the text is the one-line reason for the 400."""


@dataclass(frozen=True, slots=True)
class ProbeSummary:
    """A line of the landing page's recent probes. Only figures: keeping whole snapshots would
    hold tens of MB of samples per large target."""

    target: str
    up: bool
    duration: float
    timeout: float
    calls: int
    errors: int
    deadline_exceeded: bool
    at: float


def probe_timeout(module: ModuleConfig, scrape_timeout_header: str | None, offset: float) -> float:
    """The module's timeout, lowered to Prometheus' scrape timeout minus ``offset`` seconds for
    the answer to travel back (blackbox_exporter's --timeout-offset)."""
    timeout = module.timeout
    if scrape_timeout_header:
        try:
            scrape = float(scrape_timeout_header)
        except ValueError:
            raise BadRequest(
                f"X-Prometheus-Scrape-Timeout-Seconds is not a number: {scrape_timeout_header!r}"
            ) from None
        timeout = min(timeout, max(scrape - offset, 0.1))
    return timeout


def shared_budget(a: float, b: float) -> float:
    """The load budget of a server two modules name: the smaller, where 0 (no budget) yields
    to any budget."""
    return min(a, b) if a and b else a or b


def server_of(url: str) -> Server:
    """The server a (validated) URL names, however it is spelt: ``https://WHM1:2087/`` and
    ``https://whm1`` are one server, and share one bound."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or DEFAULT_PORTS[scheme]


def unlisted_url(target: str) -> tuple[str, str]:
    """``HOST[:PORT]`` (or a URL) to the host to check and the URL to call (port 2087 default)."""
    parts = urlsplit(target if "//" in target else f"//{target}")
    try:
        port = parts.port or 2087
    except ValueError:
        raise BadRequest(f"bad port in target {target!r}") from None
    host = parts.hostname
    if not host or parts.path not in ("", "/") or parts.query or parts.username:
        raise BadRequest(f"target {target!r} is not HOST[:PORT]")
    scheme = parts.scheme or "https"
    if scheme not in ("http", "https"):
        raise BadRequest(f"target {target!r} has an unsupported scheme")
    netloc = f"[{host}]" if ":" in host else host
    return host, f"{scheme}://{netloc}:{port}"


class Exporter:
    def __init__(
        self,
        loaded: Loaded,
        metrics: ExporterMetrics,
        config_file: str | None,
        history_limit: int = HISTORY_LIMIT,
        keeper: Keeper | None = None,
    ) -> None:
        self.metrics = metrics
        self.config_file = config_file
        self.loaded = loaded
        self.targets: dict[str, Target] = {}
        self._unlisted: OrderedDict[tuple[str, str], Target] = OrderedDict()
        self.recent: deque[ProbeSummary] = deque(maxlen=history_limit)
        # Targets replaced by a reload, and the tasks that close them after a grace period.
        self._retired: set[Target] = set()
        self._closing: set[asyncio.Task[None]] = set()
        # One concurrency bound per WHM server, shared by every target that names it; servers
        # reached only through allowed_targets have theirs in an LRU as large as their targets'.
        self._bounds: dict[Server, Bound] = {}
        self._unlisted_bounds: OrderedDict[Server, Bound] = OrderedDict()
        # --storage.path: states are read for the first config only (a target a reload adds
        # is new), written while the exporter runs.
        self._keeper = keeper
        self._restoring = keeper is not None
        self._apply(loaded)
        self._restoring = False

    def _apply(self, loaded: Loaded) -> None:
        """Switch to a new config. Targets it describes unchanged stay as they are; a target
        whose server and items are unchanged (a new token, say) keeps what it learned. Replaced
        targets take no new work and are closed once their probes had time to finish."""
        config = loaded.config
        old = self.targets
        sizes: dict[Server, int] = {}
        budgets: dict[Server, float] = {}
        for tc in config.targets.values():
            module = config.modules[tc.module]
            server = server_of(tc.url)
            sizes[server] = min(sizes.get(server, module.max_concurrency), module.max_concurrency)
            budgets[server] = shared_budget(budgets.get(server, 0.0), module.load_budget)
        # A server keeps its semaphore across reloads unless its size changed, and its budget
        # (with what it has spent) whatever the new rate.
        bounds: dict[Server, Bound] = {}
        for server, size in sizes.items():
            bound = self._bounds.get(server)
            if bound is None or bound.size != size:
                bound = Bound(size, budgets[server])
            bound.pace.budget.rate = budgets[server]
            bounds[server] = bound
        self._bounds = bounds
        new: dict[str, Target] = {}
        self.metrics.load_budget.clear()
        for name, tc in config.targets.items():
            module = config.modules[tc.module]
            bound = self._bounds[server_of(tc.url)]
            current = old.get(name)
            if current is not None and current.same_as(tc.url, module, tc.users, bound):
                new[name] = current
            else:
                if current is not None:
                    state = current.state_for(tc.url, module, tc.users)
                else:
                    state = self._restored(name, tc.url, module, tc.users)
                new[name] = Target(
                    name,
                    tc.url,
                    module,
                    tc.users,
                    bound,
                    observer=self.metrics.observer(name),
                    state=state,
                )
            self.metrics.init_target(name)
            self.metrics.load_budget.labels(name).set(new[name].bound.pace.budget.rate)
        # Unlisted hosts count under their module's name while it has allowed_targets.
        unlisted = (name for name, m in config.modules.items() if m.allowed_targets)
        self.metrics.keep_targets({*new, *unlisted})
        retired = [t for n, t in old.items() if new.get(n) is not t]
        retired += list(self._unlisted.values())
        self._unlisted.clear()
        self._unlisted_bounds.clear()
        self.loaded = loaded
        self.targets = new
        for target in retired:
            self._retire(target)
        if self._keeper is not None:
            self._keeper.configured(new)
        self.metrics.reload_ok.set(1)
        self.metrics.reload_time.set(time.time())

    def _restored(
        self, name: str, url: str, module: ModuleConfig, users: Mapping[str, tuple[str, ...]]
    ) -> TargetState | None:
        if not self._restoring:
            return None
        assert self._keeper is not None
        digest = persist.identity(server_of(url), module, users)
        return self._keeper.load(name, digest, module, users)

    def kept(self) -> list[tuple[str, str, TargetState]]:
        """Name, identity and state of each configured target, as --storage.path keeps them
        (unlisted targets are not kept: they come and go with the requests)."""
        return [
            (name, persist.identity(server_of(t.url), t.module, t.users), t.state)
            for name, t in self.targets.items()
        ]

    def start(self) -> None:
        """The event loop runs: kept states are written from now on."""
        if self._keeper is not None:
            self._keeper.start(self.kept)

    def _retire(self, target: Target) -> None:
        """Close a target once probes that started on it had their time (its timeout)."""
        target.collection.retire()
        self._retired.add(target)

        async def later() -> None:
            await asyncio.sleep(target.module.timeout + 1)
            self._retired.discard(target)
            await target.close()

        try:
            task = asyncio.get_running_loop().create_task(later())
        except RuntimeError:  # no loop yet (first load): nothing can be in flight
            return
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def reload(self) -> bool:
        """Load the config file again; a bad one is refused and the current one kept."""
        if self.config_file is None:
            log.warning("reload asked, but there is no config file (demo mode)")
            return False
        try:
            loaded = load_config(self.config_file)
        except ConfigError as err:
            self.metrics.reload_ok.set(0)
            log.error(
                "config reload refused; keeping the current config",
                extra={"problems": "; ".join(err.problems)},
            )
            return False
        for warning in loaded.warnings:
            log.warning(warning)
        self._apply(loaded)
        log.info("config reloaded", extra={"targets": len(self.targets)})
        return True

    def resolve(self, target: str | None, module: str | None) -> Target:
        """The target a /probe request names; raises BadRequest with the reason."""
        if not target:
            raise BadRequest("missing 'target' parameter")
        modules = self.loaded.config.modules
        # Checked first: a misspelt module is an error even beside a listed target.
        if module and module not in modules:
            raise BadRequest(f"unknown module {module!r}")
        if target in self.targets:
            return self.targets[target]
        if not module:
            raise BadRequest(f"unknown target {target!r} (give module= to probe an unlisted host)")
        mc = modules[module]
        host, url = unlisted_url(target)
        if not any(p.fullmatch(host) for p in mc.allowed_targets):
            # The module's token must never travel to a host the operator did not allow.
            raise BadRequest(f"host {host!r} is not in module {module!r}'s allowed_targets")
        # Looked up (and so kept recent) at each request, even when its target exists.
        bound = self._bound_for_unlisted(server_of(url), mc)
        key = (module, url)
        found = self._unlisted.get(key)
        if found is None:
            # Unlisted hosts count under their module's name on /metrics, so its cardinality
            # stays bounded by the config.
            found = Target(
                url, url, mc, {}, bound, label=module, observer=self.metrics.observer(module)
            )
            self.metrics.init_target(module)
            self.metrics.load_budget.labels(module).set(bound.pace.budget.rate)
            self._unlisted[key] = found
            if len(self._unlisted) > MAX_UNLISTED_TARGETS:
                self._retire(self._unlisted.popitem(last=False)[1])
        self._unlisted.move_to_end(key)
        return found

    def _bound_for_unlisted(self, server: Server, module: ModuleConfig) -> Bound:
        """The bound of a configured server, else one from the unlisted LRU. A server drops out
        of it only once MAX_UNLISTED_TARGETS other servers were probed since, by when each of
        its unlisted targets has dropped out of theirs: no two live targets of one server hold
        different bounds."""
        bound = self._bounds.get(server)
        if bound is not None:
            return bound
        bound = self._unlisted_bounds.get(server)
        if bound is not None:
            self._unlisted_bounds.move_to_end(server)
            return bound
        size = module.max_concurrency
        bound = self._unlisted_bounds[server] = Bound(size, module.load_budget)
        if len(self._unlisted_bounds) > MAX_UNLISTED_TARGETS:
            self._unlisted_bounds.popitem(last=False)
        return bound

    async def probe(self, target: Target, budget: float, *, look: bool = False) -> Snapshot:
        """Probe ``target`` within ``budget`` seconds (``look``: see probe.probe)."""
        snapshot = await probe(target, budget, look=look)
        self.metrics.probed(target.label, snapshot.up)
        self.recent.appendleft(
            ProbeSummary(
                target.name,
                snapshot.up,
                snapshot.duration,
                snapshot.timeout,
                sum(snapshot.calls.values()),
                sum(snapshot.errors.values()),
                snapshot.deadline_exceeded,
                time.time(),
            )
        )
        return snapshot

    def cancel_probes(self) -> None:
        """At shutdown: probes in flight answer now with what they have."""
        for target in {*self.targets.values(), *self._unlisted.values(), *self._retired}:
            target.collection.cancel()

    async def close(self) -> None:
        for task in list(self._closing):
            task.cancel()
        targets = {*self.targets.values(), *self._unlisted.values(), *self._retired}
        await asyncio.gather(*(t.close() for t in targets))
        if self._keeper is not None:
            # The calls were cancelled: each state is as its last answers left it.
            await self._keeper.close(self.kept)
