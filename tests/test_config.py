"""The configuration: defaults, every problem named by its YAML path, token sources, secrecy."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TOKEN

from whm_exporter import cli
from whm_exporter.config import build_config, load_config
from whm_exporter.yamlconf import ConfigError

ROOT = Path(__file__).parent.parent


def problems(document: object, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as err:
        build_config(document, env or {})
    return err.value.problems


def test_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHM_TOKEN", TOKEN)
    loaded = load_config(ROOT / "config.example.yaml")
    assert "whm1" in loaded.config.targets
    assert loaded.config.modules["default"].secret.get_secret_value() == TOKEN


def test_defaults_match_the_design() -> None:
    m = build_config({"modules": {"m": {"token_env": "T"}}}, {"T": "x"}).config.modules["m"]
    assert (m.username, m.timeout, m.request_timeout, m.max_concurrency) == ("root", 30, 10, 8)
    assert m.mailboxes.function == "auto"
    assert [w.label for w in m.unique_recipients.windows] == ["1h"]
    assert m.unique_recipients.end_time_lag == 60
    assert (m.unique_recipients.min_count, m.unique_recipients.max_senders_per_user) == (1, 50)
    assert m.discovery.refresh == 600
    assert not m.tls.insecure_skip_verify
    assert (m.mailboxes.refresh, m.mailboxes.max_age) == (60, 3600)
    recipients = m.unique_recipients
    assert (recipients.refresh, recipients.max_age, recipients.priority_threshold) == (0, 3600, 100)


def test_the_old_cache_key_names_its_replacement() -> None:
    found = problems({"modules": {"m": {"token": "x", "mailboxes": {"cache": "5m"}}}})
    assert found == [
        "modules.m.mailboxes.cache: `cache` was replaced by `refresh` (an answer this young is"
        " not asked again) and `max_age` (an answer this old is no longer served)"
    ]


def test_every_problem_is_reported_with_its_path() -> None:
    found = problems(
        {
            "modules": {
                "default": {
                    "token": "x",
                    "timeout": "soon",
                    "max_concurency": 4,
                    "mailboxes": {"function": "nope", "include_folders": ["("]},
                    "unique_recipients": {"windows": ["1h", "1h"], "min_count": -1},
                }
            },
            "targets": {"a": {"url": "ftp://host"}, "b": {"url": "https://x", "module": "other"}},
        }
    )
    text = "\n".join(found)
    for path in (
        "modules.default.timeout:",
        "modules.default.max_concurency: unknown key",
        "modules.default.mailboxes.function:",
        "modules.default.mailboxes.include_folders.0:",
        "modules.default.unique_recipients.windows:",
        "modules.default.unique_recipients.min_count:",
        "targets.a.url:",
        "targets.b.module: no module named 'other'",
    ):
        assert path in text, text


def test_exactly_one_token_source() -> None:
    assert "exactly one of" in problems({"modules": {"m": {}}})[0]
    assert "exactly one of" in problems({"modules": {"m": {"token": "a", "token_env": "B"}}})[0]


def test_token_env_must_be_set() -> None:
    assert problems({"modules": {"m": {"token_env": "NOPE"}}}) == [
        "modules.m.token_env: environment variable NOPE is not set"
    ]


def test_token_file_is_read_and_stripped(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    m = build_config({"modules": {"m": {"token_file": str(path)}}}, {}).config.modules["m"]
    assert m.secret.get_secret_value() == TOKEN
    missing = problems({"modules": {"m": {"token_file": str(tmp_path / "absent")}}})
    assert missing[0].startswith("modules.m.token_file: cannot read")


def test_inline_token_is_warned_and_never_shown() -> None:
    loaded = build_config({"modules": {"m": {"token": TOKEN}}}, {})
    assert any("inline" in w for w in loaded.warnings)
    assert TOKEN not in repr(loaded)
    assert TOKEN not in str(loaded.config.model_dump())


def test_bad_value_errors_do_not_echo_the_token() -> None:
    found = problems({"modules": {"m": {"token": TOKEN, "username": ["x"], "unknown": TOKEN}}})
    assert TOKEN not in "\n".join(found)


def test_yaml_syntax_error_names_the_line_without_quoting_it(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text(f"modules:\n  m:\n    token: {TOKEN}\n   bad: [\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "line" in err.value.problems[0]
    assert TOKEN not in str(err.value)


def test_config_check_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yml"
    good.write_text("modules:\n  default:\n    token_env: T\n")
    bad = tmp_path / "bad.yml"
    bad.write_text(f"modules:\n  default:\n    token: {TOKEN}\n    timeout: 3\n    extra: 1\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("T", TOKEN)
        assert cli.main(["--config.check", "--config.file", str(good)]) == 0
    assert cli.main(["--config.check", "--config.file", str(bad)]) == 1
    out = capsys.readouterr()
    assert "modules.default.timeout" in out.err
    assert "modules.default.extra: unknown key" in out.err
    assert TOKEN not in out.out + out.err


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("http://whm1.example.com:2087", True),
        ("http://203.0.113.10:2087", True),
        ("http://[2001:db8::1]:2087", True),
        ("https://whm1.example.com:2087", False),
        ("http://127.0.0.1:2087", False),
        ("http://127.8.9.10:2087", False),
        ("http://localhost:2087", False),
        ("http://[::1]:2087", False),
    ],
)
def test_token_over_plain_http_to_another_host_is_warned(url: str, warned: bool) -> None:
    loaded = build_config(
        {"modules": {"m": {"token_env": "T"}}, "targets": {"t": {"url": url, "module": "m"}}},
        {"T": TOKEN},
    )
    clear = [w for w in loaded.warnings if "unencrypted" in w]
    assert clear == (
        [
            "targets.t.url: plain http:// to a host that is not loopback: the API"
            " token travels unencrypted; use https://"
        ]
        if warned
        else []
    )
