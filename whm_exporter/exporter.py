"""The running exporter: the loaded config, the live targets, reloads and the probe entry point.

HTTP lives in server.py and the WHM servers' bounds in servers.py; this module decides which
target a request means, with which module, and whether the token may be sent there at all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from functools import partial

from whm_exporter.collect.run import Bound
from whm_exporter.collect.state import TargetState
from whm_exporter.config import Loaded, ModuleConfig, load_config, state_identity
from whm_exporter.metrics import ExporterMetrics
from whm_exporter.probe import probe
from whm_exporter.request import BadRequest
from whm_exporter.servers import Servers, server_of, unlisted_url
from whm_exporter.snapshot import Snapshot
from whm_exporter.storage import Keeper
from whm_exporter.target import Target
from whm_exporter.yamlconf import ConfigError

log = logging.getLogger("whm_exporter")


class Exporter:
    def __init__(
        self,
        loaded: Loaded,
        metrics: ExporterMetrics,
        config_file: str | None,
        keeper: Keeper | None = None,
    ) -> None:
        self.metrics = metrics
        self.config_file = config_file
        self.loaded = loaded
        self.targets: dict[str, Target] = {}
        # Targets replaced by a reload, and the tasks that close them after a grace period.
        self._retired: set[Target] = set()
        self._closing: set[asyncio.Task[None]] = set()
        # The bound of each WHM server, and the unlisted targets (retired as they leave).
        self.servers = Servers(self._retire)
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
        self.servers.apply(config)
        new: dict[str, Target] = {}
        self.metrics.load_budget.clear()
        for name, tc in config.targets.items():
            module = config.modules[tc.module]
            bound = self.servers.bound(tc.url)
            current = old.get(name)
            if current is not None and current.same_as(tc.url, module, tc.users, bound):
                new[name] = current
            else:
                advice = None
                if current is not None:
                    state = current.state_for(tc.url, module, tc.users)
                    # What the log said goes with the state it was said of.
                    advice = current.advice if state is not None else None
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
                    advice=advice,
                )
            self.metrics.init_target(name)
            self.metrics.load_budget.labels(name).set(new[name].bound.pace.budget.rate)
        # Unlisted hosts count under their module's name while it has allowed_targets.
        unlisted = (name for name, m in config.modules.items() if m.allowed_targets)
        self.metrics.keep_targets({*new, *unlisted})
        retired = [t for n, t in old.items() if new.get(n) is not t]
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
        digest = state_identity(server_of(url), module, users)
        return self._keeper.load(name, digest, module, users)

    def kept(self) -> list[tuple[str, str, TargetState]]:
        """Name, identity and state of each configured target, as --storage.path keeps them
        (unlisted targets are not kept: they come and go with the requests)."""
        return [
            (name, state_identity(server_of(t.url), t.module, t.users), t.state)
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
        make = partial(self._unlisted, module, mc, url)
        return self.servers.unlisted_target(module, mc, url, make)

    def _unlisted(self, module: str, mc: ModuleConfig, url: str, bound: Bound) -> Target:
        """A new target for an unlisted host. It counts under its module's name on /metrics, so
        that cardinality stays bounded by the config."""
        self.metrics.init_target(module)
        self.metrics.load_budget.labels(module).set(bound.pace.budget.rate)
        return Target(url, url, mc, {}, bound, label=module, observer=self.metrics.observer(module))

    async def probe(self, target: Target, budget: float, *, look: bool = False) -> Snapshot:
        """Probe ``target`` within ``budget`` seconds (``look``: see probe.probe)."""
        snapshot = await probe(target, budget, look=look)
        self.metrics.probed(target.label, snapshot.up)
        return snapshot

    def cancel_probes(self) -> None:
        """At shutdown: probes in flight answer now with what they have."""
        for target in {*self.targets.values(), *self.servers.unlisted(), *self._retired}:
            target.collection.cancel()

    async def close(self) -> None:
        for task in list(self._closing):
            task.cancel()
        targets = {*self.targets.values(), *self.servers.unlisted(), *self._retired}
        await asyncio.gather(*(t.close() for t in targets))
        if self._keeper is not None:
            # The calls were cancelled: each state is as its last answers left it.
            await self._keeper.close(self.kept)
