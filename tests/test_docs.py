"""The documentation cannot rot silently: every relative link and anchor resolves, every config
key of the schema is in the configuration page and the example, every metric the exporter can
emit is in the metrics page (and nothing else is), and every alert of the rules is listed in the
README and the alerting page."""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest
from pydantic import BaseModel

from whm_exporter.collect.state import TargetState
from whm_exporter.config import Config, build_config
from whm_exporter.exposition import WithoutCreated, write
from whm_exporter.metrics import ExporterMetrics, families
from whm_exporter.probe import snapshot
from whm_exporter.snapshot import Snapshot

# Every family on, list_pops_with_disk included (its disk metrics).
DISK = {"function": "list_pops_with_disk"}

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(
    [ROOT / "README.md", *DOCS.rglob("*.md"), *(ROOT / "examples").rglob("*.md")],
)
FENCE = re.compile(r"^ *(```|~~~)")
# [text](target) and ![alt](target); the target ends at whitespace or the closing parenthesis.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def prose(text: str) -> Iterator[str]:
    """The lines of a Markdown file outside fenced code blocks, inline code spans blanked."""
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield re.sub(r"`[^`]*`", lambda m: "`" + "x" * (len(m[0]) - 2) + "`", line)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: inline markup reduced to its text, lower case, everything
    but letters, digits, spaces, hyphens and underscores dropped, spaces turned into hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor GitHub makes for the headings of ``path``; a repeat gets -1, -2, ..."""
    made: set[str] = set()
    repeats: dict[str, int] = {}
    fenced = False
    for line in path.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced and (found := HEADING.match(line)):
            base = slug(found[2])
            count = repeats.get(base, 0)
            repeats[base] = count + 1
            made.add(f"{base}-{count}" if count else base)
    return made


def test_slug_is_githubs() -> None:
    assert slug("Kept state (`--storage.path`)") == "kept-state---storagepath"
    assert slug("Docker, Kubernetes and systemd") == "docker-kubernetes-and-systemd"
    assert slug("A least-privilege WHM API token") == "a-least-privilege-whm-api-token"
    assert slug("Users WHM names beyond the [inventory](x.md)") == (
        "users-whm-names-beyond-the-inventory"
    )
    assert slug("2,000 accounts \N{MULTIPLICATION SIGN} 8 folders, L = 20 ms") == (
        "2000-accounts--8-folders-l--20-ms"
    )


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    problems = []
    for number, line in enumerate(prose(page.read_text()), 1):
        for target in LINK.findall(line):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
                continue
            where, _, anchor = target.partition("#")
            dest = (page.parent / where).resolve() if where else page
            label = f"{page.relative_to(root)}:{number}: {target}"
            if not dest.is_relative_to(root) or not dest.exists():
                problems.append(f"{label}: no such file")
            elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
                problems.append(f"{label}: no heading with that anchor")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_a_broken_link_or_anchor_is_found(tmp_path: Path) -> None:
    # The checker itself: a dead file, a dead anchor, a link outside the tree, and good ones.
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# Front\n")
    (tmp_path / "docs" / "configuration.md").write_text("## Modules: `modules.NAME`\n")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# Top\n## Top\n[a](#top-1) [b](#nowhere) [c](missing.md)\n"
        "[d](configuration.md#modules-modulesname) [e](configuration.md#modules)\n"
        "```\n[f](ignored-in-code.md)\n```\n[g](../README.md) [h](https://example.com/x)\n"
        "[i](../../outside.md) `[j](in-a-code-span.md)`\n"
    )
    assert [f.split(": ", 1)[1] for f in broken_links(page, tmp_path)] == [
        "#nowhere: no heading with that anchor",
        "missing.md: no such file",
        "configuration.md#modules: no heading with that anchor",
        "../../outside.md: no such file",
    ]


def _model(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def schema_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every leaf key of the config schema as a dotted path; a mapping of named entries
    (``modules``, ``targets``) contributes ``NAME`` for the name."""
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        path = prefix + name
        annotation = field.annotation
        if (inner := _model(annotation)) is not None:
            keys |= schema_keys(inner, path + ".")
        elif typing.get_origin(annotation) is dict and (
            inner := _model(typing.get_args(annotation)[1])
        ):
            keys |= schema_keys(inner, path + ".NAME.")
        else:
            keys.add(path)
    return keys


def yaml_keys(node: object, prefix: str = "") -> set[str]:
    """Every key path in a YAML document, with the entries of ``modules`` and ``targets``
    named ``NAME`` as in schema_keys."""
    if not isinstance(node, dict):
        return set()
    keys: set[str] = set()
    for key, value in node.items():
        path = prefix + str(key)
        keys.add(path)
        if prefix == "" and key in ("modules", "targets") and isinstance(value, dict):
            for entry in value.values():
                keys |= yaml_keys(entry, path + ".NAME.")
        else:
            keys |= yaml_keys(value, path + ".")
    return keys


def documented_keys() -> set[str]:
    """Keys in the first column of the configuration page's tables, each under the prefix its
    section heading names in backticks (``modules.NAME``)."""
    keys: set[str] = set()
    prefix = None
    for line in (DOCS / "configuration.md").read_text().splitlines():
        if line.startswith("## "):
            named = re.search(r"`((?:modules|targets)\.NAME)`", line)
            prefix = named[1] + "." if named else None
        elif prefix and (cell := re.match(r"\|\s*`([a-z_.]+)`\s*\|", line)):
            keys.add(prefix + cell[1])
    return keys


# Mutually exclusive with token_env, which the example uses: shown there as comments.
COMMENTED = {"modules.NAME.token_file", "modules.NAME.token"}


def test_every_config_key_is_documented_and_in_the_example() -> None:
    schema = schema_keys(Config)
    assert {"modules.NAME.discovery.refresh", "targets.NAME.url"} <= schema
    assert documented_keys() == schema
    example = (ROOT / "config.example.yaml").read_text()
    assert schema - yaml_keys(yaml.safe_load(example)) == COMMENTED
    for key in COMMENTED:
        assert re.search(rf"^\s*# {key.rsplit('.', 1)[1]}: ", example, re.M), key


def empty_snapshot() -> Snapshot:
    """What a probe of a target that knows nothing yet serves, every family enabled: each
    family's part empty (families() names every family whatever it holds)."""
    document = {"modules": {"default": {"token": "x", "discovery": DISK}}}
    state = TargetState(build_config(document, {}).config.modules["default"], {})
    return snapshot(state, 0.0, 0.0, 1.0, pending=False)


def type_lines(text: str) -> set[str]:
    return set(re.findall(r"^# TYPE (\S+) ", text, re.M))


def emitted_metrics() -> set[str]:
    """Every metric name the exporter can emit, as the text format names it (a counter with
    ``_total``, a histogram by its base name): a probe's families (metrics.py builds them all
    whatever the snapshot holds) through the exporter's writer, and its own registry as
    /metrics writes it."""
    probe = b"".join(write(families(empty_snapshot()))).decode()
    own = generate_latest(WithoutCreated(ExporterMetrics().registry)).decode()
    return type_lines(probe) | type_lines(own)


def documented_metrics() -> set[str]:
    """Names in the first column of the metrics page's tables: one or more backticked names
    joined by `` / ``."""
    names: set[str] = set()
    for line in (DOCS / "metrics.md").read_text().splitlines():
        cell = re.match(r"\|\s*((?:`[a-z_:]+`(?:\s*/\s*)?)+)\s*\|", line)
        if cell:
            names.update(re.findall(r"`([a-z_:]+)`", cell[1]))
    return names


def test_every_metric_is_documented_and_nothing_else() -> None:
    emitted = emitted_metrics()
    assert {"whm_up", "whm_exporter_probes_total", "process_cpu_seconds_total"} <= emitted
    documented = documented_metrics()
    assert sorted(emitted - documented) == [], "emitted, not in docs/metrics.md"
    assert sorted(documented - emitted) == [], "in docs/metrics.md, never emitted"


def rule_alerts() -> set[str]:
    alerts: set[str] = set()
    for path in (ROOT / "prometheus").glob("*.rules.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            alerts.update(rule["alert"] for rule in group["rules"] if "alert" in rule)
    return alerts


def listed_alerts(text: str) -> list[str]:
    """Alert names in the first column of a table whose header's first cell is "alert"."""
    listed: list[str] = []
    in_table = False
    for line in text.splitlines():
        if re.match(r"\|\s*alert\s*\|", line):
            in_table = True
        elif in_table and (cell := re.match(r"\|\s*`(\w+)`\s*\|", line)):
            listed.append(cell[1])
        elif not line.startswith("|"):
            in_table = False
    return listed


@pytest.mark.parametrize("page", ["README.md", "docs/alerting.md"])
def test_every_alert_is_listed_once(page: str) -> None:
    alerts = rule_alerts()
    assert len(alerts) > 10
    listed = listed_alerts((ROOT / page).read_text())
    assert sorted(listed) == sorted(alerts), page


def test_readme_is_a_front_door() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    commands = re.findall(r"```sh\n(.*?)```", readme, re.S)[:2]
    venv = "python3 -m venv .venv && .venv/bin/pip install "
    assert commands == [
        venv + ". && .venv/bin/whm-exporter --demo\n",
        venv + "-e '.[test]' && .venv/bin/python -m pytest\n",
    ]
    assert len((DOCS / "performance.md").read_text().splitlines()) <= 450
