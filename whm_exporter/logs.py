"""Logging in logfmt or JSON, as Prometheus' own programs do (``--log.format``)."""

from __future__ import annotations

import json
import logging
import math
import sys
from datetime import UTC, datetime

# Attributes every LogRecord has; anything else was passed in ``extra=`` and is a field.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
# --log.level's names, as Prometheus' programs spell them (promslog), both ways.
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}
_NAMES = {number: name for name, number in LEVELS.items()}


def level_name(levelno: int) -> str:
    """``warn`` for WARNING; anything above ERROR (CRITICAL) is an error too."""
    return _NAMES.get(levelno) or ("error" if levelno > logging.ERROR else "debug")


def _fields(record: logging.LogRecord) -> dict[str, object]:
    fields: dict[str, object] = {
        "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": level_name(record.levelno),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    for key, value in record.__dict__.items():
        if key in _STANDARD:
            continue
        # An ``extra=`` field never hides one of the line's own (a second one keeps both).
        fields["extra_" + key if key in fields else key] = _finite(value)
    if record.exc_info:
        fields["exception"] = logging.Formatter().formatException(record.exc_info)
    return fields


def _finite(value: object) -> object:
    """NaN and the infinities as text: strict JSON readers (Go's encoding/json among them)
    refuse the bare words json.dumps would write."""
    return str(value) if isinstance(value, float) and not math.isfinite(value) else value


def _escape(char: str) -> str:
    """A JSON escape, astral characters as a surrogate pair (as JSON and go-logfmt read them)."""
    code = ord(char)
    if code > 0xFFFF:
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def _printable(text: str) -> str:
    """``text`` with every character that is not printable escaped.

    ``json.dumps`` escapes C0 controls only: DEL, C1 controls, U+2028/U+2029, lone surrogates
    would reach the log raw, and a terminal, ``splitlines`` or a log shipper takes them for line
    breaks or commands. Applied to JSON text this only touches the insides of strings, where the
    escape means the same character."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _logfmt_text(value: object) -> str:
    """A key or value as go-logfmt writes it: bare unless it is empty or holds a space, '=', '"'
    or a character that is not printable (or a backslash: no reader has to guess whether a bare
    one escapes); quoted as a JSON string, which go-logfmt unquotes as encoding/json does."""
    text = str(value).lower() if isinstance(value, bool) else str(value)  # as Go writes it
    if text and text.isprintable() and not any(c in text for c in ' ="\\'):
        return text
    return _printable(json.dumps(text, ensure_ascii=False))


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # Keys too: ``extra=`` keys are the code's own today, but nothing else keeps them so.
        return " ".join(f"{_logfmt_text(k)}={_logfmt_text(v)}" for k, v in _fields(record).items())


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # ensure_ascii=False keeps names in any script readable; _printable does the rest.
        return _printable(
            json.dumps(_fields(record), default=str, ensure_ascii=False, allow_nan=False)
        )


def setup(level: str, fmt: str) -> None:
    """``level`` is one of LEVELS (``warn``, not ``warning``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    # aiohttp's access log would print a line per scrape.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
