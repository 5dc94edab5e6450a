"""Every YAML this program reads refuses a key given twice in one mapping: PyYAML keeps the last
one silently, so a repeated section replaced the first unseen (issue 11)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import TOKEN

from whm_exporter.config import load_config
from whm_exporter.yamlconf import ConfigError, load_yaml, yaml_problem


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a: 1\na: 2\n", "not valid YAML at line 2, column 1: duplicate key 'a'"),
        ("a:\n  b: 1\n  c: 2\n  b: 3\n", "not valid YAML at line 4, column 3: duplicate key 'b'"),
        ("- {x: 1, x: 2}\n", "not valid YAML at line 1, column 10: duplicate key 'x'"),
        ("a: 1\n'a': 2\n", "not valid YAML at line 2, column 1: duplicate key 'a'"),
    ],
)
def test_duplicate_keys_are_refused_with_their_position(text: str, problem: str) -> None:
    with pytest.raises(yaml.YAMLError) as err:
        load_yaml(text)
    assert yaml_problem(err.value) == problem


def test_merge_keys_may_be_overridden() -> None:
    # "<<" merges a mapping in; a key written beside it is an override, not a duplicate.
    text = "base: &b {x: 1, y: 2}\nthis:\n  <<: *b\n  x: 3\n"
    assert load_yaml(text) == {"base": {"x": 1, "y": 2}, "this": {"x": 3, "y": 2}}


def test_loading_is_still_safe() -> None:
    with pytest.raises(yaml.YAMLError):
        load_yaml("!!python/object/apply:os.system ['true']\n")


def test_main_config_refuses_a_repeated_key_without_quoting_the_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text(f"modules:\n  default:\n    token: {TOKEN}\n    token: {TOKEN}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert err.value.problems == [
        f"{path}: not valid YAML at line 4, column 5: duplicate key 'token'"
    ]
    assert TOKEN not in str(err.value)
