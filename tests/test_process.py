"""The whole program as a user runs it (python -m whm_exporter, a config file, signals):
the token appears nowhere whatever happens, SIGHUP reloads, SIGTERM stops cleanly."""

from __future__ import annotations

import asyncio
import base64
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import procs
import pytest
import yaml
from conftest import TOKEN, WHM, samples, value, wait_until

from whm_exporter.simulator import Dataset

OTHER_TOKEN = "SECOND-TOKEN-4d1e88a0-NEVER-PRINT"
DATASET = Dataset(accounts=16, users=4, folders=3)
FAULTY = {
    account: fault
    for account, fault in zip(
        DATASET.pops[DATASET.user_names[0]] + DATASET.pops[DATASET.user_names[1]],
        [
            "http401",
            "html200",
            "garbage",
            "api_error",
            "reset",
            "huge_body",
            "weird_names",
            "stall_body",
        ],
        strict=False,
    )
}


@pytest.fixture
def closed_port() -> Iterator[int]:
    with procs.closed_port() as port:
        yield port


class Process:
    def __init__(self, child: procs.Child, url: str, config: Path) -> None:
        self.child = child
        self.proc = child.proc
        self.url = url
        self.config = config

    async def get(self, path: str, method: str = "GET") -> tuple[int, str]:
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.url + path) as r,
        ):
            return r.status, await r.text()

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str, str]:
        return self.child.stop(sig)


@pytest.fixture
async def run_exporter(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[procs.Child] = []

    async def start(
        document: dict[str, Any],
        *flags: str,
        env: dict[str, str] | None = None,
        ready_status: int = 200,
    ) -> Process:
        config = tmp_path / "config.yml"
        config.write_text(yaml.safe_dump(document))
        # In a thread: the simulator these tests start serves on this event loop meanwhile.
        child, url = await asyncio.to_thread(
            procs.start_exporter, [f"--config.file={config}", *flags], env
        )
        started.append(child)
        running = Process(child, url, config)
        # It listens: the first answer is the one it gives.
        assert (await running.get("/-/ready"))[0] == ready_status
        return running

    yield start
    for child in started:
        child.kill()


def _document(url: str, closed_port: int) -> dict[str, Any]:
    return {
        "modules": {
            "default": {"token": TOKEN, "request_timeout": "500ms", "timeout": "3s"},
            "wrong": {"token_env": "OTHER_TOKEN", "allowed_targets": [r"127\.0\.0\.1"]},
        },
        "targets": {
            "good": {"url": url},
            "badtoken": {"url": url, "module": "wrong"},
            "tls": {"url": url.replace("http://", "https://")},
            # A URL's port 0 is a config error: a port held where nothing listens instead.
            "closed": {"url": f"http://127.0.0.1:{closed_port}"},
        },
    }


async def test_token_appears_nowhere_at_debug_level(
    start_whm, run_exporter, closed_port: int
) -> None:
    whm: WHM = await start_whm(DATASET, faults=FAULTY)
    env = {"OTHER_TOKEN": OTHER_TOKEN, "PATH": "/usr/bin:/bin"}
    document = _document(whm.url, closed_port)
    exporter: Process = await run_exporter(
        document, "--log.level=debug", "--log.format=json", env=env
    )
    bodies = []
    for path in [
        "/",
        "/metrics",
        "/-/healthy",
        "/probe",
        "/probe?target=nope",
        f"/probe?target={whm.url}&module=wrong",
        "/probe?target=evil.example&module=wrong",
    ]:
        bodies.append((await exporter.get(path))[1])
    for target in document["targets"]:
        for debug in ("", "&debug=true"):
            status, body = await exporter.get(f"/probe?target={target}{debug}")
            assert status == 200
            bodies.append(body)
    status, text = await exporter.get("/probe?target=good")
    assert value(samples(text), "whm_up") == 1
    assert value(samples(text), "whm_api_errors", function="get_mailbox_status_list", reason="auth")
    # A broken config holding the token inline is refused on SIGHUP (the reload gauge drops
    # from 1 to 0), then on POST, and logged both times.
    exporter.config.write_text(f"modules:\n  default:\n    token: {TOKEN}\n    timeout: x\n")
    exporter.proc.send_signal(signal.SIGHUP)

    async def refused() -> bool:
        bodies.append((await exporter.get("/metrics"))[1])
        return value(samples(bodies[-1]), "whm_exporter_config_last_reload_successful") == 0

    await wait_until(refused, "SIGHUP to refuse the broken config")
    status, body = await exporter.get("/-/reload", "POST")
    assert status == 500
    bodies.append(body)
    check = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "whm_exporter",
            "--config.check",
            f"--config.file={exporter.config}",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert check.returncode == 1
    code, out, err = exporter.stop()
    assert code == 0
    assert err.count("config reload refused") == 2
    everything = "\n".join([*bodies, out, err, check.stdout, check.stderr])
    for secret in (TOKEN, OTHER_TOKEN):
        assert secret not in everything
    # The logs were really at debug level and saw the failures.
    assert '"level": "debug"' in err
    assert "WHM call failed" in err


async def test_sighup_reloads_the_config(start_whm, run_exporter, closed_port: int) -> None:
    whm: WHM = await start_whm(DATASET)
    exporter: Process = await run_exporter(
        _document(whm.url, closed_port), env={"OTHER_TOKEN": OTHER_TOKEN}
    )
    assert (await exporter.get("/probe?target=renamed"))[0] == 400
    document = _document(whm.url, closed_port)
    document["targets"]["renamed"] = {"url": whm.url}
    exporter.config.write_text(yaml.safe_dump(document))
    exporter.proc.send_signal(signal.SIGHUP)
    for _ in range(50):
        status, text = await exporter.get("/probe?target=renamed")
        if status == 200:
            break
        await asyncio.sleep(0.1)
    assert status == 200
    assert value(samples(text), "whm_up") == 1
    assert exporter.stop()[0] == 0


async def test_sigterm_with_a_probe_in_flight_exits_cleanly(
    start_whm, run_exporter, closed_port: int
) -> None:
    whm: WHM = await start_whm(DATASET, faults={"get_mailbox_status_list": "slow"})
    document = _document(whm.url, closed_port)
    document["modules"]["default"].update(request_timeout="1m", timeout="1m")
    exporter: Process = await run_exporter(document, env={"OTHER_TOKEN": OTHER_TOKEN})
    in_flight = asyncio.create_task(exporter.get("/probe?target=good"))
    await wait_until(
        lambda: whm.sim.stats.calls["get_mailbox_status_list"] > 0, "a mailbox call in flight"
    )
    started = time.monotonic()
    code, _, err = await asyncio.to_thread(exporter.stop)
    assert code == 0, err
    assert time.monotonic() - started < 3
    assert "Traceback" not in err
    assert "Unclosed" not in err
    # The probe in flight was answered with what it had, and says it was cut short.
    status, text = await in_flight
    assert status == 200
    assert value(samples(text), "whm_probe_deadline_exceeded") == 1


async def test_web_config_flag_protects_every_endpoint(
    start_whm, run_exporter, tmp_path: Path, closed_port: int
) -> None:
    whm: WHM = await start_whm(DATASET)
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    web_config = tmp_path / "web.yml"
    web_config.write_text(f"basic_auth_users:\n  prom: '{hashed}'\n")
    exporter: Process = await run_exporter(
        _document(whm.url, closed_port),
        f"--web.config.file={web_config}",
        env={"OTHER_TOKEN": OTHER_TOKEN},
        ready_status=401,
    )
    assert (await exporter.get("/metrics"))[0] == 401
    auth = "Basic " + base64.b64encode(b"prom:s3cret").decode()
    async with (
        aiohttp.ClientSession(headers={"Authorization": auth}) as session,
        session.get(exporter.url + "/probe?target=good") as resp,
    ):
        assert resp.status == 200
    assert exporter.stop()[0] == 0


async def test_bad_web_config_exits_1_naming_the_key(
    run_exporter, tmp_path: Path, closed_port: int
) -> None:
    web_config = tmp_path / "web.yml"
    web_config.write_text("basic_auth_users:\n  prom: plaintext\n")
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump(_document("http://127.0.0.1:1", closed_port)))
    result = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "whm_exporter",
            f"--config.file={config}",
            f"--web.config.file={web_config}",
            "--web.listen-address=127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        env={"OTHER_TOKEN": OTHER_TOKEN},
        timeout=30,
    )
    assert result.returncode == 1
    assert "basic_auth_users.prom: not a bcrypt hash" in result.stderr


async def test_demo_shows_mailbox_and_sender_metrics(run_exporter) -> None:
    # The README's first command: --demo needs no config and shows real numbers at once.
    exporter: Process = await run_exporter({}, "--demo")
    status, text = await exporter.get("/probe?target=demo")
    assert status == 200
    found = samples(text)
    assert value(found, "whm_up") == 1
    names = {name for name, _ in found}
    assert {
        "whm_mailbox_messages",
        "whm_mailbox_size_bytes",
        "whm_sender_unique_recipients",
        "whm_user_unique_recipients",
    } <= names
    assert max(v for (n, _), v in found.items() if n == "whm_sender_unique_recipients") > 500
    code, out, _ = exporter.stop()
    assert code == 0
    assert "probe?target=demo" in out
