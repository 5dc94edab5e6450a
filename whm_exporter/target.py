"""One WHM server as a configured target: its session and client, the bound it shares with every
target naming the same server, the state it has learned, and the collection that feeds it."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from whm_exporter.advice import Advice
from whm_exporter.collect.run import Bound, Collection
from whm_exporter.collect.state import TargetState
from whm_exporter.config import ModuleConfig, shapes_state
from whm_exporter.whm.client import CallObserver, WHMClient, new_session


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
        state: TargetState | None = None,
        advice: Advice | None = None,
    ) -> None:
        self.name = name
        # The target label of the exporter's own metrics.
        self.label = label or name
        self.url = url
        self.module = module
        self.users = users
        # Shared with every probe of every target naming this server, so HA pairs, retries and
        # duplicate targets cannot multiply the load on it.
        self.bound = bound
        if state is None:
            state = TargetState(module, users)
            if module.mailboxes.function != "auto":
                state.mailbox_function = module.mailboxes.function
        state.module = module
        self.state = state
        # What the log said of this target's pace: kept with its state.
        self.advice = advice or Advice()
        self.collection = Collection(name, state, bound, lambda: self.client)
        self._observer = observer
        self._session: aiohttp.ClientSession | None = None
        self._client: WHMClient | None = None

    def same_as(
        self, url: str, module: ModuleConfig, users: Mapping[str, tuple[str, ...]], bound: Bound
    ) -> bool:
        """Whether a reloaded config describes this very target, token included (a model's
        equality covers its private attributes, the resolved token among them)."""
        same = (url, module, dict(users)) == (self.url, self.module, dict(self.users))
        return same and bound is self.bound

    def state_for(
        self, url: str, module: ModuleConfig, users: Mapping[str, tuple[str, ...]]
    ) -> TargetState | None:
        """This target's state, when a reloaded config for the same server can keep it (the same
        user too: a reseller's token sees only its own accounts)."""
        same_items = (url, module.username, dict(users)) == (
            self.url,
            self.module.username,
            dict(self.users),
        )
        return self.state if same_items and shapes_state(module, self.module) else None

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

    async def close(self) -> None:
        self.collection.cancel()
        if self._session is not None:
            await self._session.close()
