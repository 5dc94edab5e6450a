"""The configuration: defaults, every problem named by its YAML path, token sources, secrecy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TOKEN
from pydantic import BaseModel

from whm_exporter import cli
from whm_exporter.config import TargetConfig, build_config, load_config
from whm_exporter.whm.client import _snippet
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


def test_example_config_shows_every_key_with_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """config.example.yaml says it shows every key with its default: each key of the schema is
    in it (the token sources, one of three, as comments), with the default's value."""
    monkeypatch.setenv("WHM_TOKEN", TOKEN)
    text = (ROOT / "config.example.yaml").read_text()
    shown = load_config(ROOT / "config.example.yaml").config
    module = shown.modules["default"]
    defaults = build_config({"modules": {"m": {"token_env": "WHM_TOKEN"}}}).config.modules["m"]

    def walk(model: BaseModel, default: BaseModel, path: str) -> None:
        for name in type(model).model_fields:
            value, expected = getattr(model, name), getattr(default, name)
            if isinstance(value, BaseModel):
                walk(value, expected, f"{path}.{name}")
            elif name in ("token", "token_file"):
                assert f"# {name}: " in text, f"{path}.{name}"
            else:
                assert value == expected, f"{path}.{name}: {value!r}, default {expected!r}"

    walk(module, defaults, "modules.default")
    # Every key written out, section by section (a key left out would load as its default).
    raw = yaml.safe_load(text)["modules"]["default"]
    assert set(raw) == type(module).model_fields.keys() - {"token", "token_file"}
    for name in type(module).model_fields:
        if isinstance(getattr(module, name), BaseModel):
            assert set(raw[name]) == set(type(getattr(module, name)).model_fields), name
    assert set(yaml.safe_load(text)["targets"]["whm1"]) == set(TargetConfig.model_fields)


def test_defaults_match_the_design() -> None:
    m = build_config({"modules": {"m": {"token_env": "T"}}}, {"T": "x"}).config.modules["m"]
    assert (m.username, m.timeout, m.request_timeout, m.max_concurrency) == ("root", 30, 10, 8)
    assert m.load_budget == 1.0
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


def test_token_and_ca_file_problems_show_beside_schema_problems(tmp_path: Path) -> None:
    # The token and CA file are read once the schema holds: a module valid on its own is read
    # even when another part of the file is not, so one --config.check names all of it.
    found = problems(
        {
            "modules": {
                "good": {"token_env": "UNSET", "tls": {"ca_file": str(tmp_path / "no.pem")}},
                "bad": {"token": "x", "timeout": "soon"},
            },
            "targets": {"a": {"url": "ftp://host", "module": "good"}},
        }
    )
    assert len(found) == 4, found
    text = "\n".join(found)
    for where in (
        "modules.bad.timeout:",
        "targets.a.url:",
        "modules.good.token_env: environment variable UNSET is not set",
        "modules.good.tls.ca_file:",
    ):
        assert where in text, where


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


@pytest.mark.parametrize("token", ["", "   ", "\n", " \t\r\n"])
def test_an_empty_token_is_an_error_naming_its_key(tmp_path: Path, token: str) -> None:
    """Whichever way it is given: an empty token would be sent, refused by WHM at every call,
    and would make every snippet's redaction replace the empty string everywhere."""
    path = tmp_path / "token"
    path.write_text(token)
    assert problems({"modules": {"m": {"token": token}}}) == ["modules.m.token: the token is empty"]
    assert problems({"modules": {"m": {"token_env": "T"}}}, {"T": token}) == [
        "modules.m.token_env: environment variable T is empty"
    ]
    assert problems({"modules": {"m": {"token_file": str(path)}}}) == [
        f"modules.m.token_file: {path} is empty"
    ]


@pytest.mark.parametrize("token", ["ABC DEF", "ABC\nDEF", "ABC\x1bDEF", "ABC\u2028DEF"])
def test_a_token_with_a_break_inside_is_an_error_naming_its_key(tmp_path: Path, token: str) -> None:
    """A two-line token file would put a line break in the Authorization header of every call."""
    path = tmp_path / "token"
    path.write_text(token)
    why = "holds a space, line break or control character"
    assert problems({"modules": {"m": {"token": token}}}) == [f"modules.m.token: the token {why}"]
    assert problems({"modules": {"m": {"token_file": str(path)}}}) == [
        f"modules.m.token_file: {path} {why}"
    ]


def test_config_check_refuses_an_empty_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yml"
    path.write_text('modules:\n  default:\n    token: ""\n')
    assert cli.main(["--config.check", "--config.file", str(path)]) == 1
    assert "modules.default.token: the token is empty" in capsys.readouterr().err


def test_an_inline_token_is_stripped_as_the_other_sources_are() -> None:
    loaded = build_config({"modules": {"m": {"token": f" {TOKEN}\n"}}}, {})
    assert loaded.config.modules["m"].secret.get_secret_value() == TOKEN


def test_an_empty_secret_redacts_nothing() -> None:
    # Defence in depth behind the check above: replacing "" would put <token> between every
    # two characters of a logged snippet.
    assert _snippet(b'{"ok"', "") == repr('{"ok"')
    assert _snippet(b"a " + TOKEN.encode(), TOKEN) == repr("a <token>")


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


def test_missing_or_unusable_ca_file_is_a_load_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    for ca_file, expected in (
        (tmp_path / "absent.pem", "cannot read"),
        (garbage, "no usable PEM certificate"),
        (tmp_path, "cannot read"),
    ):
        found = problems({"modules": {"m": {"token": "x", "tls": {"ca_file": str(ca_file)}}}})
        assert len(found) == 1, found
        assert found[0].startswith("modules.m.tls.ca_file: "), found
        assert expected in found[0]


def test_config_check_refuses_a_missing_ca_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yml"
    path.write_text(
        f"modules:\n  default:\n    token_env: T\n    tls:\n      ca_file: {tmp_path}/x\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("T", TOKEN)
        assert cli.main(["--config.check", "--config.file", str(path)]) == 1
    assert "modules.default.tls.ca_file: cannot read" in capsys.readouterr().err


def test_config_file_that_is_not_utf8_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_bytes(b"modules:\n  default:\n    token: caf\xe9\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.problems == [f"{path}: not UTF-8 text (line 3)"]


def test_token_file_that_is_not_utf8_is_one_clear_error(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_bytes(b"\xff\xfe" + TOKEN.encode())
    assert problems({"modules": {"m": {"token_file": str(token)}}}) == [
        f"modules.m.token_file: {token} is not UTF-8 text"
    ]


@pytest.mark.parametrize(
    "url", ["https://whm.example:99999", "https://whm.example:0", "https://whm.example:x"]
)
def test_target_url_with_a_bad_port_is_an_error(url: str) -> None:
    found = problems({"modules": {"default": {"token": "x"}}, "targets": {"t": {"url": url}}})
    assert found == [f"targets.t.url: {url!r} has a bad port (1 to 65535)"]


@pytest.mark.parametrize("key", ["timeout", "request_timeout"])
def test_zero_timeouts_are_errors(key: str) -> None:
    assert problems({"modules": {"m": {"token": "x", key: "0s"}}}) == [
        f"modules.m.{key}: must be longer than 0s"
    ]


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n"])
def test_empty_config_file_is_an_error_naming_it(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert len(err.value.problems) == 1
    assert err.value.problems[0].startswith(f"{path}: the file is empty")


def test_config_check_reads_the_web_config_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yml"
    config.write_text("modules:\n  default:\n    token_env: T\n")
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  alice: $2b$04$notbcrypt\n")
    args = ["--config.check", f"--config.file={config}", f"--web.config.file={web}"]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("T", TOKEN)
        assert cli.main(args) == 1
        err = capsys.readouterr().err
        assert f"{web}: 1 problem(s):" in err
        assert "basic_auth_users.alice" in err
        web.write_text("basic_auth_users: {}\n")
        assert cli.main(args) == 0
        assert capsys.readouterr().out.splitlines()[-1] == f"{web}: OK"


def test_missing_web_cert_stops_start_up_with_one_line_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    config.write_text("modules:\n  default:\n    token_env: T\n")
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {tmp_path}/absent.crt\n  key_file: {config}\n"
    )
    started = subprocess.run(
        [
            sys.executable,
            "-m",
            "whm_exporter",
            f"--config.file={config}",
            f"--web.config.file={web}",
            "--web.listen-address=127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        env={"T": TOKEN},
        timeout=60,
    )
    assert started.returncode == 1
    errors = [line for line in started.stderr.splitlines() if "level=error" in line]
    assert len(errors) == 1, started.stderr
    assert f"tls_server_config.cert_file: cannot read {tmp_path}/absent.crt" in errors[0]
