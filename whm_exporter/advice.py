"""What the log tells an operator about a target's pace, once per change: answers expiring before
the collection comes back to them, and a load budget too small to keep the mailboxes within
``max_age``. The flags of what was said live here, with the target, not in its state."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from whm_exporter.families.mailboxes import current_function

if TYPE_CHECKING:
    from whm_exporter.snapshot import Snapshot
    from whm_exporter.target import Target

# The probe's advice, under the logger name it has always had.
log = logging.getLogger("whm_exporter.probe")


@dataclass(slots=True)
class Advice:
    """What the log said last about one target (kept with its state across a reload)."""

    # Answers expire before they are asked again.
    slow: bool = False
    # The load budget cannot keep the mailboxes within max_age.
    over_budget: bool = False

    def slow_pass(self, name: str, expired: int) -> None:
        """Once per target (and again after it recovers): answers outlived max_age before the
        collection came back to them."""
        if expired and not self.slow:
            log.warning(
                "a full pass over the target takes longer than max_age: answers expire before they"
                " are asked again; raise load_budget (or max_concurrency without a budget) or"
                " max_age, or filter users",
                extra={"target": name, "expired": expired},
            )
        elif not expired and self.slow:
            log.info("every answer is within max_age again", extra={"target": name})
        self.slow = bool(expired)

    def load_budget(self, target: Target, found: Snapshot, now: float) -> None:
        """Once per target (and again after it fits): at its server's load budget, what the spam
        signal leaves of it does not keep the target's mailboxes within ``mailboxes.max_age``.
        Said before answers expire: when one pass over the mailboxes and address lists (at the
        mean call times measured) would take longer than ``max_age``, or when the oldest mailbox
        answer served is past three quarters of it; with the budget that would do."""
        state, pace = target.state, target.bound.pace
        module = state.module
        rate = pace.budget.rate
        if not rate or not module.mailboxes.enabled or state.listaccts is None:
            return
        if any(item.answer is None for item in state.pops.values()):
            return  # discovery is not complete: the counts are not known yet
        function = current_function(state)
        work = len(state.mailboxes) * pace.estimate(function)
        work += len(state.pops) * pace.estimate(module.discovery.function)
        signal = pace.signal_load(now)
        left = rate - signal
        max_age = module.mailboxes.max_age
        target_pass = 0.75 * max_age
        oldest = found.data_age.get(function, 0.0)
        passing = work / left if left > 0 else math.inf
        over = passing > max_age or oldest > target_pass
        if over and not self.over_budget:
            log.warning(
                "at this load budget the mailboxes are not kept within mailboxes.max_age: they"
                " will expire before they are asked again; raise load_budget, raise max_age, or"
                " filter users or accounts",
                extra={
                    "target": target.name,
                    "load_budget": rate,
                    "spam_signal_load": round(signal, 2),
                    "pass_seconds": round(max(oldest, passing)) if passing < math.inf else "never",
                    "oldest_mailbox_seconds": round(oldest),
                    "max_age_seconds": max_age,
                    "load_budget_needed": math.ceil((signal + work / target_pass) * 10) / 10,
                },
            )
        elif not over and self.over_budget:
            log.info(
                "the load budget keeps the target within max_age again",
                extra={"target": target.name},
            )
        self.over_budget = over
