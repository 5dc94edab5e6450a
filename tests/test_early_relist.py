"""The early re-list (collect/state.py, TargetState._outsiders) asked only for an unlisted user
the target's user filters would keep (the mutation run of issue 24 found the include filter
untested: test_state.py's filter test answers too soon after the listing for any re-list)."""

from __future__ import annotations

import pytest
from statekit import SENDING, answer, discovered, state_for


@pytest.mark.parametrize(("user", "early"), [("nobody", False), ("newbie", True)])
def test_an_unlisted_user_the_include_filter_leaves_out_asks_for_no_relist(
    user: str, early: bool
) -> None:
    state = state_for(discovery={"refresh": "10m", "include_users": ["alice|bob|carol|newbie"]})
    discovered(state, 1.0)
    # Past a tenth of refresh after the listing: only the filter decides.
    answer(state, state.totals["1h"], {**SENDING, user: 800}, 100.0)
    assert state.listaccts is not None
    assert state.listaccts.early is early
