"""Exporter's own concerns: which target a /probe request means (resolve), and switching to a
new config (reload, apply) while keeping what the unchanged targets learned."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import TOKEN, WHM, loaded, module

from whm_exporter.config import load_config
from whm_exporter.exporter import Exporter
from whm_exporter.metrics import ExporterMetrics
from whm_exporter.request import BadRequest

DOCUMENT = {
    "modules": {
        "default": {"token": TOKEN},
        "open": {"token": TOKEN, "allowed_targets": [r"whm\d\.example"]},
    },
    "targets": {"t": {"url": "https://whm1.example"}},
}


async def test_unknown_module_is_400_even_for_a_listed_target(whm: WHM, start_exporter) -> None:
    running = await start_exporter(module(whm.url))
    status, text = await running.get("/probe?target=t&module=nope")
    assert status == 400
    assert text == "unknown module 'nope'\n"
    assert (await running.get("/probe?target=t&module=default"))[0] == 200


@pytest.mark.parametrize(
    ("target", "module_name", "reason"),
    [
        (None, None, "missing 'target' parameter"),
        ("", "open", "missing 'target' parameter"),
        ("t", "nope", "unknown module 'nope'"),
        (
            "whm2.example",
            None,
            "unknown target 'whm2.example' (give module= to probe an unlisted host)",
        ),
        (
            "whm2.example",
            "default",
            "host 'whm2.example' is not in module 'default''s allowed_targets",
        ),
        ("evil.example", "open", "host 'evil.example' is not in module 'open''s allowed_targets"),
        ("whm2.example:x", "open", "bad port in target 'whm2.example:x'"),
    ],
)
def test_resolve_says_why_a_request_names_no_target(
    target: str | None, module_name: str | None, reason: str
) -> None:
    exporter = Exporter(loaded(DOCUMENT), ExporterMetrics(), None)
    with pytest.raises(BadRequest) as err:
        exporter.resolve(target, module_name)
    assert str(err.value) == reason


def test_resolve_finds_a_listed_target_and_an_allowed_host() -> None:
    exporter = Exporter(loaded(DOCUMENT), ExporterMetrics(), None)
    listed = exporter.targets["t"]
    assert exporter.resolve("t", None) is listed
    assert exporter.resolve("t", "open") is listed
    unlisted = exporter.resolve("whm2.example", "open")
    assert (unlisted.url, unlisted.label, unlisted.module.allowed_targets) == (
        "https://whm2.example:2087",
        "open",
        exporter.loaded.config.modules["open"].allowed_targets,
    )
    assert exporter.resolve("https://whm2.example:2087/", "open") is unlisted


def test_without_a_config_file_a_reload_changes_nothing() -> None:
    exporter = Exporter(loaded(DOCUMENT), ExporterMetrics(), None)
    before = dict(exporter.targets)
    assert exporter.reload() is False
    assert exporter.targets == before


def test_a_reload_keeps_unchanged_targets_and_the_state_of_a_new_token(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    document = {
        "modules": {"a": {"token": TOKEN}, "b": {"token": TOKEN}},
        "targets": {
            "same": {"url": "https://whm1.example", "module": "a"},
            "token": {"url": "https://whm2.example", "module": "b"},
        },
    }
    path.write_text(yaml.safe_dump(document))
    exporter = Exporter(load_config(path), ExporterMetrics(), str(path))
    same, token = exporter.targets["same"], exporter.targets["token"]
    document["modules"]["b"]["token"] = TOKEN + "-rotated"
    path.write_text(yaml.safe_dump(document))
    assert exporter.reload() is True
    assert exporter.targets["same"] is same
    assert exporter.targets["token"] is not token
    assert exporter.targets["token"].state is token.state
    # What the log said of that state goes with it: no warning said again after a reload.
    assert exporter.targets["token"].advice is token.advice
    path.write_text("modules: [")
    assert exporter.reload() is False
    assert exporter.targets["same"] is same


def test_a_reload_that_starts_a_target_cold_forgets_what_the_log_said(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    document = {
        "modules": {"m": {"token": TOKEN}},
        "targets": {"t": {"url": "https://whm1.example", "module": "m"}},
    }
    path.write_text(yaml.safe_dump(document))
    exporter = Exporter(load_config(path), ExporterMetrics(), str(path))
    before = exporter.targets["t"]
    before.advice.slow = True
    # Another server's state is not this one's: a new state and nothing said of it yet.
    document["targets"]["t"]["url"] = "https://whm2.example"
    path.write_text(yaml.safe_dump(document))
    assert exporter.reload() is True
    after = exporter.targets["t"]
    assert after.state is not before.state
    assert after.advice is not before.advice
    assert not after.advice.slow
