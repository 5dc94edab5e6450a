"""What every YAML file this program reads shares: strict schemas, and problems reported one per
line with the YAML path of the key at fault."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pydantic import BaseModel, ConfigDict, ValidationError


class ConfigError(Exception):
    """A configuration that cannot be used; ``problems`` holds one ``path: reason`` per issue."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


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
