"""Flags and environment variables as node_exporter and blackbox_exporter take them, the
start-up log, systemd socket activation and the log level's spelling."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from conftest import TOKEN, WHM

from whm_exporter import cli, logs


def test_flags_read_environment_variables_and_flags_win() -> None:
    env = {
        "WHM_EXPORTER_CONFIG_FILE": "/etc/w.yml",
        "WHM_EXPORTER_WEB_LISTEN_ADDRESS": ":9999",
        "WHM_EXPORTER_LOG_LEVEL": "debug",
        "WHM_EXPORTER_TIMEOUT_OFFSET": "1.5",
        "WHM_EXPORTER_HISTORY_LIMIT": "3",
        "WHM_EXPORTER_WEB_SYSTEMD_SOCKET": "true",
    }
    args = cli.parse_args([], env=env)
    assert (args.config_file, args.web_listen_address, args.log_level) == (
        "/etc/w.yml",
        ":9999",
        "debug",
    )
    assert (args.timeout_offset, args.history_limit, args.web_systemd_socket) == (1.5, 3, True)
    args = cli.parse_args(["--web.listen-address=:1", "--log.level=warn"], env=env)
    assert (args.web_listen_address, args.log_level) == (":1", "warn")


def test_defaults() -> None:
    args = cli.parse_args([], env={})
    assert (args.config_file, args.web_telemetry_path, args.timeout_offset) == (
        "whm_exporter.yml",
        "/metrics",
        0.5,
    )
    assert (args.history_limit, args.log_level, args.web_systemd_socket) == (25, "info", False)
    assert cli.listen_address(args) == ":10087"


@pytest.mark.parametrize(
    "argv",
    [
        ["--web.listen=:1"],  # an abbreviation
        ["--config=x.yml"],
        ["--log.level=warning"],
        ["--web.listen-address=:99999"],
        ["--web.listen-address=localhost"],
        ["--web.telemetry-path=metrics"],
        ["--web.telemetry-path=/probe"],
        ["--web.external-url=example.com/whm"],
        ["--web.external-url='http://example.com/'"],
        ["--web.external-url=http://example.com/{x}"],
        ["--web.route-prefix=/{x}"],
        ["--web.route-prefix=/a b"],
        ["--web.telemetry-path=/m{x}"],
        ["--timeout-offset=-1"],
        ["--timeout-offset=nan"],
        ["--history.limit=-1"],
    ],
)
def test_bad_flags_are_refused(argv: list[str]) -> None:
    with pytest.raises(cli.UsageError):
        cli.parse_args(argv, env={})


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("WHM_EXPORTER_LOG_LEVEL", "verbose"),
        ("WHM_EXPORTER_LOG_FORMAT", "xml"),
        ("WHM_EXPORTER_WEB_LISTEN_ADDRESS", ":99999"),
        ("WHM_EXPORTER_TIMEOUT_OFFSET", "half"),
        ("WHM_EXPORTER_HISTORY_LIMIT", "many"),
        ("WHM_EXPORTER_WEB_SYSTEMD_SOCKET", "yes please"),
    ],
)
def test_bad_environment_values_are_refused_naming_the_variable(var: str, value: str) -> None:
    with pytest.raises(cli.UsageError, match=re.escape(f"{var}={value!r}")):
        cli.parse_args([], env={var: value})


def test_a_bad_environment_value_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WHM_EXPORTER_LOG_LEVEL", "verbose")
    assert cli.main([]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "WHM_EXPORTER_LOG_LEVEL='verbose'" in err
    assert "invalid choice" in err


def test_help_shows_defaults_and_variables(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.parse_args(["--help"], env={})
    assert exit_.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for shown in (
        "(default: whm_exporter.yml) [WHM_EXPORTER_CONFIG_FILE]",
        "(default: :10087; with --demo: 127.0.0.1:10087)",
        "(default: /metrics) [WHM_EXPORTER_WEB_TELEMETRY_PATH]",
        "(default: 0.5) [WHM_EXPORTER_TIMEOUT_OFFSET]",
        "(default: 25) [WHM_EXPORTER_HISTORY_LIMIT]",
        "(default: info) [WHM_EXPORTER_LOG_LEVEL]",
        "(default: logfmt) [WHM_EXPORTER_LOG_FORMAT]",
        "[WHM_EXPORTER_WEB_SYSTEMD_SOCKET]",
        "[WHM_EXPORTER_WEB_ROUTE_PREFIX]",
        "[WHM_EXPORTER_WEB_EXTERNAL_URL]",
    ):
        assert shown in out


@pytest.mark.parametrize(
    ("flags", "prefix"),
    [
        ([], "/"),
        (["--web.external-url=http://proxy.example/whm"], "/whm/"),
        (["--web.external-url=https://proxy.example:8443/a/b/"], "/a/b/"),
        (["--web.external-url=http://proxy.example/"], "/"),
        (["--web.external-url=http://proxy.example/whm", "--web.route-prefix=/"], "/"),
        (["--web.route-prefix=whm"], "/whm/"),
        (["--web.route-prefix=/whm/"], "/whm/"),
        (["--web.external-url="], "/"),
    ],
)
def test_route_prefix_as_prometheus_derives_it(flags: list[str], prefix: str) -> None:
    assert cli.web_options(cli.parse_args(flags, env={})).route_prefix == prefix


def test_the_demo_listens_on_loopback_unless_told() -> None:
    assert cli.listen_address(cli.parse_args(["--demo"], env={})) == "127.0.0.1:10087"
    told = cli.parse_args(["--demo", "--web.listen-address=:8080"], env={})
    assert cli.listen_address(told) == ":8080"
    env = {"WHM_EXPORTER_WEB_LISTEN_ADDRESS": "0.0.0.0:1"}
    assert cli.listen_address(cli.parse_args(["--demo"], env=env)) == "0.0.0.0:1"


@pytest.mark.parametrize(
    ("level", "spelt"),
    [
        (logging.DEBUG, "debug"),
        (logging.INFO, "info"),
        (logging.WARNING, "warn"),
        (logging.ERROR, "error"),
        (logging.CRITICAL, "error"),
    ],
)
def test_log_levels_are_spelt_as_prometheus_does(level: int, spelt: str) -> None:
    record = logging.makeLogRecord({"levelno": level, "msg": "m", "name": "whm_exporter"})
    assert f"level={spelt} " in logs.LogfmtFormatter().format(record)
    assert json.loads(logs.JSONFormatter().format(record))["level"] == spelt


# The program as a user starts it.


class Started:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    async def line_with(self, text: str) -> str:
        """The first stderr line holding ``text``, waiting for it (at most 20 s)."""
        assert self.proc.stderr is not None
        async with asyncio.timeout(20):
            while True:
                line = (await self.proc.stderr.readline()).decode()
                if not line:
                    raise AssertionError(f"exited before saying {text!r}: {self.lines}")
                self.lines.append(line)
                if text in line:
                    return line


@pytest.fixture
async def start(tmp_path: Path, whm: WHM) -> AsyncIterator[Callable[..., Any]]:
    config = tmp_path / "config.yml"
    config.write_text(
        yaml.safe_dump(
            {"modules": {"default": {"token": TOKEN}}, "targets": {"t": {"url": whm.url}}}
        )
    )
    procs: list[asyncio.subprocess.Process] = []

    async def run(*argv: str, pass_fds: tuple[int, ...] = ()) -> Started:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            f"--config.file={config}",
            "--log.format=json",
            stderr=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            pass_fds=pass_fds,
        )
        procs.append(proc)
        return Started(proc)

    yield run
    for proc in procs:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()


async def _healthy(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url + "/-/healthy") as resp:
        return resp.status


async def test_start_up_logs_the_port_really_bound(start) -> None:
    started = await start(sys.executable, "-m", "whm_exporter", "--web.listen-address=127.0.0.1:0")
    line = json.loads(await started.line_with('"listening"'))
    host, port = cli.split_listen(line["address"])
    assert host == "127.0.0.1"
    assert port != 0
    assert await _healthy(f"http://127.0.0.1:{port}") == 200


# Puts the socket where systemd does (descriptor 3), says it is for this process, then becomes
# the exporter: the same process, as systemd's own exec does.
LAUNCHER = """
import os, sys
os.dup2(int(sys.argv[1]), 3)
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = "1"
os.execv(sys.executable, [sys.executable, "-m", "whm_exporter", *sys.argv[2:]])
"""


async def test_systemd_socket_activation(start) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        started = await start(
            sys.executable,
            "-c",
            LAUNCHER,
            str(listener.fileno()),
            "--web.systemd-socket",
            "--web.listen-address=127.0.0.1:1",  # ignored, as exporter-toolkit does
            pass_fds=(listener.fileno(),),
        )
        line = json.loads(await started.line_with('"listening"'))
    assert line["address"] == f"127.0.0.1:{port}"
    assert await _healthy(f"http://127.0.0.1:{port}") == 200


async def test_systemd_socket_without_systemd_is_a_clear_error(start) -> None:
    started = await start(sys.executable, "-m", "whm_exporter", "--web.systemd-socket")
    line = json.loads(await started.line_with("cannot start"))
    assert "no socket passed by systemd" in line["err"]
    assert await started.proc.wait() == 1
