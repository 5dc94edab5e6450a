"""What holds the families to the machinery beyond what mypy sees: a snapshot's parts are read
by name (``snapshot.senders``), and the kept state's identity lists the config sections by hand
(config.py cannot import the families, which import it)."""

from __future__ import annotations

import dataclasses
from collections import Counter

from statekit import state_for

from whm_exporter.config import STATE_SECTIONS
from whm_exporter.families import FAMILIES
from whm_exporter.families.base import Served
from whm_exporter.snapshot import Snapshot


def test_the_state_sections_are_the_families_sections() -> None:
    # A family whose section the identity left out would keep its answers across a change of
    # its settings; one listed but gone would cold-start every target for nothing.
    assert sorted(STATE_SECTIONS) == sorted({f.section for f in FAMILIES})


def test_each_part_of_a_snapshot_has_one_family_and_no_field_of_its_name() -> None:
    # Every family on, each serving what an empty state holds: the names its part has.
    state = state_for(mail_flow={"enabled": True})
    served = Served(0.0, 0.0, set())
    names = Counter(name for f in FAMILIES for name in f.serve(state, served))
    assert [n for n, times in names.items() if times > 1] == []
    fields = {f.name for f in dataclasses.fields(Snapshot)}
    assert names.keys() & fields == set()
    assert len(names) >= len(FAMILIES)
