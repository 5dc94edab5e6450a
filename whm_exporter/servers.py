"""The WHM servers the exporter calls, as the concurrency bound and the load budget know them:
one key per server however its URL is spelt, one :class:`Bound` per server shared by every
target naming it, and the targets reached only through a module's allowed_targets, kept in an
LRU with the bounds of their servers."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from whm_exporter.collect.run import Bound
from whm_exporter.config import Config, ModuleConfig
from whm_exporter.request import BadRequest
from whm_exporter.target import Target

# Unlisted hosts probed through a module keep their state (bound, caches) in an LRU this large.
MAX_UNLISTED_TARGETS = 256
# WHM's own ports (2087 with TLS, 2086 without): the port a URL without one means.
DEFAULT_PORTS = {"https": 2087, "http": 2086}
# A WHM server as the concurrency bound knows it: scheme, lower-case host, port.
ServerKey = tuple[str, str, int]


def server_of(url: str) -> ServerKey:
    """The server a (validated) URL names, however it is spelt: ``https://WHM1:2087/`` and
    ``https://whm1`` are one server, and share one bound."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or DEFAULT_PORTS[scheme]


def shared_budget(a: float, b: float) -> float:
    """The load budget of a server two modules name: the smaller, where 0 (no budget) yields
    to any budget."""
    return min(a, b) if a and b else a or b


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


class Servers:
    """The bound of each server the config names, and the unlisted targets with the bounds of
    the servers only they reach. ``retire`` is handed each unlisted target that leaves."""

    def __init__(self, retire: Callable[[Target], None]) -> None:
        self._retire = retire
        self._bounds: dict[ServerKey, Bound] = {}
        self._unlisted_bounds: OrderedDict[ServerKey, Bound] = OrderedDict()
        self._unlisted: OrderedDict[tuple[str, str], Target] = OrderedDict()

    def apply(self, config: Config) -> None:
        """Bound each configured server by the smallest max_concurrency and the shared load
        budget of the modules naming it; the unlisted targets leave (their modules may have
        changed)."""
        sizes: dict[ServerKey, int] = {}
        budgets: dict[ServerKey, float] = {}
        for tc in config.targets.values():
            module = config.modules[tc.module]
            server = server_of(tc.url)
            sizes[server] = min(sizes.get(server, module.max_concurrency), module.max_concurrency)
            budgets[server] = shared_budget(budgets.get(server, 0.0), module.load_budget)
        # A server keeps its semaphore across reloads unless its size changed, and its budget
        # (with what it has spent) whatever the new rate.
        bounds: dict[ServerKey, Bound] = {}
        for server, size in sizes.items():
            bound = self._bounds.get(server)
            if bound is None or bound.size != size:
                bound = Bound(size, budgets[server])
            bound.pace.budget.rate = budgets[server]
            bounds[server] = bound
        self._bounds = bounds
        for target in self._unlisted.values():
            self._retire(target)
        self._unlisted.clear()
        self._unlisted_bounds.clear()

    def bound(self, url: str) -> Bound:
        """The bound of a configured target's server."""
        return self._bounds[server_of(url)]

    def unlisted(self) -> Iterable[Target]:
        return self._unlisted.values()

    def unlisted_target(
        self, module: str, mc: ModuleConfig, url: str, make: Callable[[Bound], Target]
    ) -> Target:
        """The target of ``module`` at ``url``, made with its server's bound when new. Looked up
        (and so kept recent) at each request, even when it exists."""
        bound = self._for_unlisted(server_of(url), mc)
        key = (module, url)
        found = self._unlisted.get(key)
        if found is None:
            found = self._unlisted[key] = make(bound)
            if len(self._unlisted) > MAX_UNLISTED_TARGETS:
                self._retire(self._unlisted.popitem(last=False)[1])
        self._unlisted.move_to_end(key)
        return found

    def _for_unlisted(self, server: ServerKey, module: ModuleConfig) -> Bound:
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
