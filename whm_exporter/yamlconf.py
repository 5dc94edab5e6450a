"""What every YAML file this program reads shares: strict schemas, and problems reported one per
line with the YAML path of the key at fault."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError


class ConfigError(Exception):
    """A configuration that cannot be used; ``problems`` holds one ``path: reason`` per issue."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error: YAML
    forbids it and PyYAML silently keeps the last one, so a second ``basic_auth_users: {}``
    would switch authentication off unseen."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            # ``<<`` merges another mapping in; keys written here may override merged ones.
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # PyYAML's own check below reports it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {str(key)[:60]!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` that refuses duplicate keys; raises ``yaml.YAMLError``."""
    # A SafeLoader subclass: as safe as yaml.safe_load.
    return yaml.load(text, Loader=_UniqueKeyLoader)


def yaml_problem(err: yaml.YAMLError) -> str:
    """Where and what, never the text of the line: it may hold a token or a password."""
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(err, "problem", None) or "syntax error"
    return f"not valid YAML{where}: {problem}"


def _path(loc: Iterable[int | str]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def validation_messages(
    err: ValidationError, renamed: Mapping[str, str] | None = None
) -> list[str]:
    """pydantic's errors as ``yaml.path: reason`` lines; a key in ``renamed`` is explained
    with its text rather than called unknown."""
    out = []
    for e in err.errors(include_url=False, include_input=False):
        # Pydantic names model validators' locations after the model; strip its wording.
        msg = str(e["msg"]).removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            key = str(e["loc"][-1]) if e["loc"] else ""
            msg = (renamed or {}).get(key, "unknown key (check its spelling and indentation)")
        loc = [p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        out.append(f"{_path(loc)}: {msg}")
    return out


class StrictModel(BaseModel):
    """Unknown keys are errors (a typo must not pass silently); loaded objects never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)
