"""The live state of one WHM server: its session, its concurrency bound, what it has taught us
(which mailbox function it knows), its discovery and answer caches, and the collection in flight
that overlapping probes share."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import aiohttp

from whm_exporter.cache import AnswerCache
from whm_exporter.config import ModuleConfig
from whm_exporter.discovery import Discovery
from whm_exporter.probe import MAILBOX_LIST, Probe
from whm_exporter.snapshot import Snapshot
from whm_exporter.whm.client import CallObserver, WHMClient, new_session


class Bound(asyncio.Semaphore):
    """The most WHM calls that may be in flight toward one server."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class Target:
    def __init__(
        self,
        name: str,
        url: str,
        module: ModuleConfig,
        users: Mapping[str, tuple[str, ...]],
        bound: Bound,
        *,
        label: str | None = None,
        observer: CallObserver | None = None,
    ) -> None:
        self.name = name
        # The target label of the exporter's own metrics.
        self.label = label or name
        self.url = url
        self.module = module
        self.users = users
        # Shared with every probe of every target naming this server, so HA pairs, retries and
        # duplicate targets cannot multiply the load on it.
        self.semaphore = bound
        self.discovery = Discovery(module.discovery, users)
        self.cache = AnswerCache()
        self._observer = observer
        self._session: aiohttp.ClientSession | None = None
        self._client: WHMClient | None = None
        self._learned_mailbox_function: str | None = None
        self._running: tuple[Probe, asyncio.Task[None]] | None = None

    def same_as(
        self, url: str, module: ModuleConfig, users: Mapping[str, tuple[str, ...]], bound: Bound
    ) -> bool:
        """Whether a reloaded config describes this very target (so its state carries over)."""
        same = (url, module, dict(users)) == (self.url, self.module, dict(self.users))
        return same and bound is self.semaphore

    @property
    def client(self) -> WHMClient:
        if self._client is None:
            self._session = new_session(self.module.tls, self.module.max_concurrency)
            self._client = WHMClient(
                self._session,
                self.url,
                self.module.username,
                self.module.secret,
                request_timeout=self.module.request_timeout,
                max_response_bytes=self.module.max_response_bytes,
                server_name=self.module.tls.server_name,
                observer=self._observer,
            )
        return self._client

    def mailbox_function(self) -> str:
        configured = self.module.mailboxes.function
        if configured != "auto":
            return configured
        return self._learned_mailbox_function or MAILBOX_LIST

    def knows_mailbox_function(self) -> bool:
        return (
            self.module.mailboxes.function != "auto" or self._learned_mailbox_function is not None
        )

    def learn_mailbox_function(self, function: str) -> None:
        self._learned_mailbox_function = function

    async def probe(self, budget: float) -> Snapshot:
        """Collect now, or join the collection already running for this target: WHM then sees
        each call once and every waiting scraper gets the whole answer."""
        started = time.monotonic()
        deadline = asyncio.get_running_loop().time() + budget
        if self._running is None:
            probe = Probe(self)
            running = (probe, asyncio.create_task(probe.run(deadline)))
            # Forget a finished collection: its waiters hold it, nothing else should.
            running[1].add_done_callback(lambda _: self._forget(running))
            self._running = running
        probe, task = self._running
        done, _ = await asyncio.wait({task}, timeout=budget)
        return probe.snapshot(started, budget, cut_off=task not in done or task.cancelled())

    def _forget(self, running: tuple[Probe, asyncio.Task[None]]) -> None:
        if self._running is running:
            self._running = None

    def cancel(self) -> None:
        """Stop the collection in flight; its waiting probes answer with what arrived."""
        if self._running is not None:
            self._running[1].cancel()

    async def close(self) -> None:
        self.cancel()
        if self._session is not None:
            await self._session.close()
