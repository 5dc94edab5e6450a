"""What ships for deployment: the Dockerfile (hadolint), docker-compose, Prometheus examples
(promtool) and Kubernetes manifests, each checked as far as this machine allows (no Docker
engine here: the image itself is not built)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from conftest import require_tool

from whm_exporter.config import Config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
K8S_VERSION = "1.30"


def _tool_in_venv(name: str) -> str:
    found = Path(sys.executable).parent / name
    return str(found) if found.exists() else require_tool(name)


def test_hadolint_finds_nothing() -> None:
    hadolint = _tool_in_venv("hadolint")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_pinned_multi_stage_non_root_with_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(bases) == 2
    assert all(re.search(r":\d+\.\d+\.\d+-slim", b) for b in bases), bases
    final = text.rsplit("\nFROM ", 1)[1]
    assert "pip install" not in final
    assert "apt-get" not in final
    assert re.search(r"^USER 10087:10087$", final, re.M)
    assert "EXPOSE 10087" in final
    assert "HEALTHCHECK" in final
    assert "/-/healthy" in final
    assert "/etc/whm-exporter/config.yml" in final


def test_compose_mounts_files_that_exist_and_a_valid_exporter_config() -> None:
    folder = EXAMPLES / "docker-compose"
    compose = yaml.safe_load((folder / "docker-compose.yml").read_text())
    assert set(compose["services"]) == {"whm-exporter", "prometheus", "grafana"}
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert (folder / source).exists(), source
    Config.model_validate(yaml.safe_load((folder / "whm_exporter.yml").read_text()))


def test_compose_prometheus_config_loads_the_rules(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    shutil.copy(EXAMPLES / "docker-compose" / "prometheus.yml", tmp_path)
    shutil.copy(ROOT / "prometheus" / "whm-exporter.rules.yml", tmp_path)
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rules found" not in result.stdout
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("name", ["static.yml", "file_sd.yml", "sharded.yml"])
def test_prometheus_examples_are_valid(name: str) -> None:
    promtool = require_tool("promtool")
    result = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(EXAMPLES / "prometheus" / name)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_manifests() -> None:
    docs = list(yaml.safe_load_all((EXAMPLES / "kubernetes" / "whm-exporter.yaml").read_text()))
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"Secret", "ConfigMap", "Deployment", "Service", "Probe", "ServiceMonitor"}
    for doc in docs:
        assert doc["apiVersion"]
        assert doc["metadata"]["name"]
    Config.model_validate(yaml.safe_load(kinds["ConfigMap"]["data"]["config.yml"]))
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert "/run/secrets/whm" in mounts
    assert kinds["Probe"]["spec"]["prober"]["path"] == "/probe"


def test_kubernetes_core_objects_match_the_api_schemas() -> None:
    docs = list(yaml.safe_load_all((EXAMPLES / "kubernetes" / "whm-exporter.yaml").read_text()))
    core = [d for d in docs if not d["apiVersion"].startswith("monitoring.coreos.com/")]
    assert {d["kind"] for d in core} == {"Secret", "ConfigMap", "Deployment", "Service"}
    for doc in core:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    # The check bites: a misspelt field is refused.
    broken = next(d for d in core if d["kind"] == "Deployment")
    broken["spec"]["template"]["spec"]["contianers"] = broken["spec"]["template"]["spec"].pop(
        "containers"
    )
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
