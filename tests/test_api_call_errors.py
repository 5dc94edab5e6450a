"""whm_api_call_errors_total: failed calls counted since collection began, whoever scraped. The
alert rules read it (not whm_api_errors, which counts since the previous scrape by any scraper):
with two Prometheus servers each sees the same count."""

from __future__ import annotations

from conftest import module, series, value

from whm_exporter.simulator import Dataset
from whm_exporter.whm.errors import REASONS

MAILBOX = "get_mailbox_status_list"
DATASET = Dataset(accounts=12, users=3, folders=2)


async def test_errors_accumulate_whoever_scraped_and_every_reason_starts_at_zero(
    start_whm, start_exporter
) -> None:
    whm = await start_whm(DATASET, faults={MAILBOX: "api_error"})
    running = await start_exporter(module(whm.url))
    scrapes = [await running.probe() for _ in range(3)]
    per_scrape = [value(s, "whm_api_errors", function=MAILBOX, reason="api") or 0 for s in scrapes]
    total = [value(s, "whm_api_call_errors_total", function=MAILBOX, reason="api") for s in scrapes]
    assert per_scrape[0] > 0
    # Each scrape took its share of the per-scrape figure; the counter holds them all (read in
    # the same moment as the share, so exactly).
    assert total == [sum(per_scrape[: n + 1]) for n in range(3)]
    # Every other reason of the function at 0: a counter that first appears at 1 is invisible
    # to increase(), so the alert would miss an error that never repeats.
    for reason in REASONS:
        if reason != "api":
            assert (
                value(scrapes[0], "whm_api_call_errors_total", function=MAILBOX, reason=reason) == 0
            )


async def test_only_functions_called_have_series(start_whm, start_exporter) -> None:
    whm = await start_whm(DATASET)
    user = DATASET.user_names[0]
    document = module(whm.url, users={user: list(DATASET.pops[user])}, discovery={"enabled": False})
    running = await start_exporter(document)
    found = series(await running.probe(), "whm_api_call_errors_total")
    functions = {dict(labels)["function"] for labels in found}
    assert MAILBOX in functions
    assert "listaccts" not in functions
    assert len(found) == len(functions) * len(REASONS)
    assert set(found.values()) == {0}
