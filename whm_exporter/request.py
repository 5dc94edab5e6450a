"""What a /probe request asks beyond its target: the reason it cannot be served, and the deadline
Prometheus' scrape timeout header sets. Kept apart from server.py so that the exporter and the
per-server table can refuse a request without importing the HTTP app."""

from __future__ import annotations

import math

from whm_exporter.config import ModuleConfig


class BadRequest(Exception):
    """A /probe request that cannot be served: the text is the one-line reason for the 400."""


def probe_timeout(module: ModuleConfig, scrape_timeout_header: str | None, offset: float) -> float:
    """The module's timeout, lowered to Prometheus' scrape timeout minus ``offset`` seconds for
    the answer to travel back (blackbox_exporter's --timeout-offset)."""
    timeout = module.timeout
    if scrape_timeout_header:
        try:
            scrape = float(scrape_timeout_header)
        except ValueError:
            scrape = math.nan
        # "nan" and "inf" parse as floats, and would have left the module's timeout in force.
        if not math.isfinite(scrape):
            raise BadRequest(
                f"X-Prometheus-Scrape-Timeout-Seconds is not a number: {scrape_timeout_header!r}"
            ) from None
        timeout = min(timeout, max(scrape - offset, 0.1))
    return timeout
