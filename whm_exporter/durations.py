"""Durations in Prometheus' syntax (``1h30m``, ``500ms``), read and written as Prometheus does
(prometheus/common ``model/time.go``: ``ParseDuration`` and ``Duration.String``)."""

from __future__ import annotations

import re

_MS_PER = {
    "y": 365 * 86_400_000,
    "w": 7 * 86_400_000,
    "d": 86_400_000,
    "h": 3_600_000,
    "m": 60_000,
    "s": 1000,
    "ms": 1,
}
_ORDER = tuple(_MS_PER)  # largest first: "1m1d" is refused, not read as a month and a day
# Prometheus keeps durations as Go time.Duration: nanoseconds in a signed 64-bit integer.
_MAX_NS = 2**63 - 1
# Only ASCII digits ("\d" would take other scripts' digits); a unit is everything up to the next
# digit, so a trailing newline or space makes an unknown unit, as in Go.
_WHOLE = re.compile(r"(?:[0-9]+[^0-9]+)+")
_PART = re.compile(r"([0-9]+)([^0-9]+)")
_SYNTAX = "Prometheus syntax: 500ms, 30s, 5m, 1h, 1h30m, or 0"


def parse_duration(value: object) -> float:
    """A Prometheus duration to seconds. ``0`` alone is valid (also as a YAML integer)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"must be a duration string ({_SYNTAX})")
    text = str(value)
    if text == "0":
        return 0.0
    if not _WHOLE.fullmatch(text):
        raise ValueError(f"{text!r} is not a duration ({_SYNTAX})")
    total_ns = 0
    last = -1
    for digits, unit in _PART.findall(text):
        if unit not in _MS_PER:
            raise ValueError(f"{text!r} is not a duration: unknown unit {unit!r} ({_SYNTAX})")
        position = _ORDER.index(unit)
        if position <= last:
            raise ValueError(f"{text!r} is not a duration: units must go from largest to smallest")
        last = position
        if len(digits) > 19:  # past 2**63 whatever the unit; int() of a huge string is slow
            raise ValueError(f"duration {text!r} is out of range (at most about 292y)")
        total_ns += int(digits) * _MS_PER[unit] * 1_000_000
        if total_ns > _MAX_NS:
            raise ValueError(f"duration {text!r} is out of range (at most about 292y)")
    return total_ns / 1e9


def format_duration(seconds: float) -> str:
    """Seconds as Prometheus prints a duration: whole milliseconds, years and weeks only when
    exact (``2w``, but ``23d1h`` rather than ``3w2d1h``), ``0s`` for zero."""
    ms = abs(round(seconds * 1e9)) // 1_000_000
    out = ""
    for unit, size in _MS_PER.items():
        if unit in ("y", "w") and ms % size:
            continue
        if ms >= size:
            out += f"{ms // size}{unit}"
            ms %= size
    if not out:
        return "0s"
    return "-" + out if seconds < 0 else out
