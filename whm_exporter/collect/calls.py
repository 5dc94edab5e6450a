"""What an item asks WHM, as its family plans it (families/), and what is kept of the answer.

A :class:`Call` names the function and its parameters; its ``keep`` parses the decoded body,
applies the module's filters and limits, and stores the result in the state. Parsing errors
leave as :class:`WHMError` (reason ``protocol``): the runner records them.
"""

from __future__ import annotations

from typing import Any

from whm_exporter.collect.state import Item, TargetState
from whm_exporter.families import BY_KIND, FAMILIES, windows_of
from whm_exporter.families.base import Call, span
from whm_exporter.whm.errors import WHMError


def time_range(
    state: TargetState,
    window: str,
    wall: float,
    names: tuple[str, str] = ("start_time", "end_time"),
) -> dict[str, str | int]:
    """Start and end of a window, of whichever family asks about it."""
    return span(state.module, windows_of(state.module), window, wall, names)


def plan(item: Item[Any], state: TargetState, wall: float) -> Call | None:
    """The call that answers ``item`` now (``wall``: the time of day, for windows); None when
    its family answered it without one."""
    return BY_KIND[item.kind].plan(item, state, wall)


def fallback(state: TargetState, call: Call, err: WHMError) -> bool:
    """Learn from a call the server refused (a function it lacks); True when the call should
    be made again."""
    return any(f.fallback(state, call, err) for f in FAMILIES)
