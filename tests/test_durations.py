"""Durations read and printed as Prometheus does. The cases are prometheus/common's
``model/time_test.go`` (TestParseDuration, TestDuration_UnmarshalJSON, TestParseBadDuration),
plus the ones this project met."""

from __future__ import annotations

import pytest

from whm_exporter.durations import format_duration, parse_duration

MS = 0.001
S, M, H, D, W, Y = 1, 60, 3600, 86400, 7 * 86400, 365 * 86400


@pytest.mark.parametrize(
    ("text", "seconds", "printed"),
    [
        # prometheus/common TestParseDuration / TestDuration_UnmarshalJSON
        ("0", 0, "0s"),
        ("0w", 0, "0s"),
        ("0s", 0, "0s"),
        ("324ms", 324 * MS, "324ms"),
        ("3s", 3 * S, "3s"),
        ("5m", 5 * M, "5m"),
        ("1h", H, "1h"),
        ("4d", 4 * D, "4d"),
        ("4d1h", 4 * D + H, "4d1h"),
        ("14d", 14 * D, "2w"),
        ("3w", 3 * W, "3w"),
        ("3w2d1h", 3 * W + 2 * D + H, "23d1h"),
        ("10y", 10 * Y, "10y"),
        ("289y", 289 * Y, "289y"),
        # This project's
        ("1m30s", 90, "1m30s"),
        ("90s", 90, "1m30s"),
        ("1500ms", 1.5, "1s500ms"),
        ("7d", W, "1w"),
        ("365d", Y, "1y"),
        ("366d", Y + D, "366d"),
        ("1h30m", 5400, "1h30m"),
        ("01s", 1, "1s"),
    ],
)
def test_parsed_and_printed_as_prometheus_does(text: str, seconds: float, printed: str) -> None:
    assert parse_duration(text) == pytest.approx(seconds, abs=1e-9)
    assert format_duration(parse_duration(text)) == printed


@pytest.mark.parametrize(
    "bad",
    [
        # prometheus/common TestParseBadDuration
        "1",
        "1y1m1d",
        "-1w",
        "1.5d",
        "d",
        "294y",
        "200y10400w",
        "107675d",
        "2584200h",
        "",
        # This project's: a trailing newline or space is not a unit, nor are other scripts' digits
        "1h\n",
        "1h ",
        " 1h",
        "1x",
        "m5",
        "5mm",
        "1s1s",
        "1m1h",
        "\u0661s",
        "9" * 5000 + "s",
        30,
        None,
        True,
        1.5,
    ],
)
def test_refused_as_prometheus_refuses(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_out_of_range_says_so() -> None:
    with pytest.raises(ValueError, match="out of range"):
        parse_duration("294y")


def test_a_yaml_integer_zero_is_zero() -> None:
    assert parse_duration(0) == 0


@pytest.mark.parametrize(
    ("seconds", "printed"),
    [(1.5, "1s500ms"), (0.5, "500ms"), (29.5, "29s500ms"), (0.0004, "0s"), (-90, "-1m30s")],
)
def test_fractions_are_kept_to_the_millisecond(seconds: float, printed: str) -> None:
    assert format_duration(seconds) == printed
