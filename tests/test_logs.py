"""The log formats. A field may hold untrusted text (WHM's reason for a failed call is whatever
the server says): every record is one line with nothing raw that a terminal or a log shipper
would take for a line break or a command, and a logfmt or JSON reader gets the text back."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
from conftest import WHM, module, wait_until

from whm_exporter import logs
from whm_exporter.simulator import Dataset
from whm_exporter.simulator.faults import HOSTILE_REASON

# Besides CR, ESC and U+2028: NUL, DEL, a C1 control (NEL), a file separator (a line break to
# str.splitlines), U+2029, a lone surrogate, an astral private-use character and a no-break space.
HOSTILE = HOSTILE_REASON + "\x00\x7f\x85\x1c\u2029\ud800\U000f0000\u00a0end"
FORMATTERS: dict[str, logging.Formatter] = {
    "logfmt": logs.LogfmtFormatter(),
    "json": logs.JSONFormatter(),
}
DATASET = Dataset(accounts=8, users=2, folders=2)


def _record(**extra: object) -> logging.LogRecord:
    return logging.makeLogRecord(
        {"msg": "WHM call failed", "name": "whm_exporter", "levelno": logging.WARNING, **extra}
    )


def _field(line: str, fmt: str, key: str) -> object:
    """A field as a reader gets it back. A quoted logfmt value is a JSON string: go-logfmt
    unquotes as encoding/json does."""
    if fmt == "json":
        return json.loads(line)[key]
    value = line.split(f" {key}=", 1)[1]
    if not value.startswith('"'):
        return value.split(" ", 1)[0]
    return json.JSONDecoder().raw_decode(value)[0]


def _one_clean_line(line: str) -> None:
    # Printable means no control, format or separator character (bar the space): nothing that
    # ends a line for any reader (str.splitlines knows them all) or that a terminal obeys.
    assert line.isprintable(), ascii(line)
    assert len(line.splitlines()) == 1


@pytest.mark.parametrize("fmt", FORMATTERS)
def test_an_untrusted_value_is_one_line_with_nothing_raw(fmt: str) -> None:
    line = FORMATTERS[fmt].format(_record(detail=HOSTILE, after="x"))
    _one_clean_line(line)
    assert _field(line, fmt, "detail") == HOSTILE
    assert _field(line, fmt, "after") == "x"


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("plain", "plain"),
        ("", '""'),
        ("a\x1bb", '"a\\u001bb"'),
        ("a\rb", '"a\\rb"'),
        ("a\x7fb", '"a\\u007fb"'),
        ("a\u2028b", '"a\\u2028b"'),
        ("a\U000f0000b", '"a\\udb80\\udc00b"'),
        ("a=b", '"a=b"'),
    ],
)
def test_logfmt_quotes_any_value_holding_a_character_go_would(value: str, written: str) -> None:
    """As go-logfmt: quoted when it holds a space, '=', '"' or a character that is not printable,
    which is then escaped as JSON escapes it (astral ones as a surrogate pair)."""
    assert logs.LogfmtFormatter().format(_record(x=value)).endswith(f" x={written}")


@pytest.mark.parametrize("fmt", FORMATTERS)
def test_printable_text_in_any_script_stays_readable(fmt: str) -> None:
    text = "INBOX.Überweisungen ✉ 😀"
    line = FORMATTERS[fmt].format(_record(folder=text))
    assert text in line
    assert _field(line, fmt, "folder") == text


@pytest.mark.parametrize("fmt", FORMATTERS)
def test_keys_are_escaped_as_values_are(fmt: str) -> None:
    key = "a\rb=c\u2028"
    line = FORMATTERS[fmt].format(_record(**{key: "v"}))
    _one_clean_line(line)
    if fmt == "json":
        assert json.loads(line)[key] == "v"
    else:
        assert line.endswith(' "a\\rb=c\\u2028"=v')


@pytest.fixture
def logged() -> Iterator[dict[str, io.StringIO]]:
    """What the exporter's loggers write, in both formats at once."""
    streams = {fmt: io.StringIO() for fmt in FORMATTERS}
    handlers = []
    for fmt, formatter in FORMATTERS.items():
        handler = logging.StreamHandler(streams[fmt])
        handler.setFormatter(formatter)
        handlers.append(handler)
    package = logging.getLogger("whm_exporter")
    level = package.level
    package.setLevel(logging.WARNING)
    for handler in handlers:
        package.addHandler(handler)
    yield streams
    for handler in handlers:
        package.removeHandler(handler)
    package.setLevel(level)


async def test_a_hostile_whm_reason_leaves_one_quoted_line(
    start_whm, start_exporter, logged: dict[str, io.StringIO]
) -> None:
    """WHM's reason, with CR, ESC and U+2028, sent by the simulator over HTTP, read by the
    client, logged by the collection: one line in each format, the reason intact inside it."""
    account = DATASET.pops[DATASET.user_names[0]][0]
    whm: WHM = await start_whm(DATASET, faults={account: "api_hostile_reason"})
    running = await start_exporter(module(whm.url))
    assert (await running.get("/probe?target=t"))[0] == 200
    await wait_until(
        lambda: all("WHM call failed" in s.getvalue() for s in logged.values()),
        "the failed call to be logged",
    )
    for fmt, stream in logged.items():
        lines = stream.getvalue().split("\n")
        assert lines.pop() == ""
        for line in lines:
            _one_clean_line(line)
        failed = [line for line in lines if "WHM call failed" in line]
        assert len(failed) == 1, lines
        assert _field(failed[0], fmt, "detail") == HOSTILE_REASON
        assert sum("forged" in line for line in lines) == 1


def _strict(text: str) -> dict[str, object]:
    def refuse(word: str) -> object:
        raise ValueError(f"not JSON: {word}")

    found = json.loads(text, parse_constant=refuse)
    assert isinstance(found, dict)
    return found


def test_json_lines_are_strict_json_whatever_the_numbers() -> None:
    # Go's encoding/json (and many log shippers) refuse the bare NaN and Infinity.
    line = FORMATTERS["json"].format(_record(seconds=float("nan"), rate=float("-inf"), n=1.5))
    assert _strict(line) == {**_strict(line), "seconds": "nan", "rate": "-inf", "n": 1.5}


@pytest.mark.parametrize("fmt", FORMATTERS)
def test_an_extra_field_never_hides_the_lines_own(fmt: str) -> None:
    line = FORMATTERS[fmt].format(_record(level="debug", ts="forged", target="t"))
    assert _field(line, fmt, "level") == "warn"
    assert _field(line, fmt, "extra_level") == "debug"
    assert _field(line, fmt, "extra_ts") == "forged"
    assert _field(line, fmt, "target") == "t"


@pytest.mark.parametrize("fmt", FORMATTERS)
def test_a_traceback_does_not_replace_an_err_field(fmt: str) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = _record(err="disk full")
        record.exc_info = sys.exc_info()
    line = FORMATTERS[fmt].format(record)
    _one_clean_line(line)
    assert _field(line, fmt, "err") == "disk full"
    assert "RuntimeError: boom" in str(_field(line, fmt, "exception"))
