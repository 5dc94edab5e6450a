"""A metric family as both writers take it (exposition.py), and the lazy samples of a big one.
A leaf module: the metrics module and every signal family build these."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

Sample = tuple[tuple[str, ...], float]


class Lazy:
    """Samples made while they are written, never held: a big probe has hundreds of thousands,
    and the answer is streamed. Iterable again and again (the debug page and tests read twice)."""

    def __init__(self, make: Callable[[], Iterator[Sample]]) -> None:
        self._make = make

    def __iter__(self) -> Iterator[Sample]:
        return self._make()


@dataclass(frozen=True, slots=True)
class Family:
    """One family of a probe: the single description both renderers work from. A counter's
    ``name`` is its family's, without ``_total``."""

    name: str
    help: str
    labels: tuple[str, ...] = ()
    samples: Iterable[Sample] = ()
    type: Literal["gauge", "counter"] = "gauge"
