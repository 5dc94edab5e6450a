"""Durations in Prometheus' syntax (``1h30m``, ``500ms``), read and written."""

from __future__ import annotations

import re

_DURATION_RE = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


def parse_duration(value: object) -> float:
    """Prometheus duration syntax (``1h30m``, ``500ms``) to seconds."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError("must be a duration string such as 30s, 5m or 1h (Prometheus syntax)")
    match = _DURATION_RE.match(value)
    if not value or match is None:
        raise ValueError(f"{value!r} is not a duration (Prometheus syntax: 500ms, 30s, 5m, 1h)")
    return float(
        sum(int(n) * unit for n, unit in zip(match.groups(), _DURATION_UNITS, strict=True) if n)
    )


def format_duration(seconds: float) -> str:
    """Seconds back to the shortest Prometheus duration string (for pages and HELP texts)."""
    if seconds < 1 and seconds > 0:
        return f"{round(seconds * 1000)}ms"
    rest, out = int(seconds), ""
    for unit, name in ((86400, "d"), (3600, "h"), (60, "m"), (1, "s")):
        if rest >= unit:
            out += f"{rest // unit}{name}"
            rest %= unit
    return out or "0s"
