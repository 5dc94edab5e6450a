"""The one error type of talking to WHM, with the reason classes the metrics expose."""

from __future__ import annotations

from typing import Literal, get_args

# The `reason` label of whm_api_errors (docs/metrics.md); nothing else may appear there.
Reason = Literal["auth", "timeout", "connect", "tls", "http", "api", "protocol", "role_disabled"]
REASONS: tuple[Reason, ...] = get_args(Reason)
# The most of a failure's text kept, in characters.
MAX_DETAIL = 500


class WHMError(Exception):
    """A failed WHM call. ``detail`` is for logs (WHM's own reason when it gave one); it never
    holds credentials. ``unknown_function`` marks answers saying the server lacks the function;
    ``status`` is the HTTP status of an ``http`` failure that had one."""

    def __init__(
        self,
        reason: Reason,
        detail: str,
        *,
        unknown_function: bool = False,
        status: int | None = None,
    ) -> None:
        if len(detail) > MAX_DETAIL:
            # WHM's reason is the server's text, as long as it likes (up to max_response_bytes):
            # it goes to the log and the debug page, where a screenful says all there is.
            detail = f"{detail[:MAX_DETAIL]}... ({len(detail) - MAX_DETAIL} more characters)"
        super().__init__(f"{reason}: {detail}")
        self.reason: Reason = reason
        self.detail = detail
        self.unknown_function = unknown_function
        self.status = status
