"""Users WHM's server-wide answers name that the inventory lacks: accounts created since the last
listing, system users such as ``nobody``, suspended accounts, users beyond a target's explicit
list. They keep their spam and mail-flow series, hot ones get their senders asked, and an
unlisted one makes the exporter list the accounts again (issue 19)."""

from __future__ import annotations

from dataclasses import replace

from conftest import WHM, Samples, fixture, module, series, value, wait_until

from whm_exporter.simulator import Dataset

FLOW = "emailtrack_user_stats"
SENDERS = "get_unique_recipient_count_per_sender_for_user"
TOTALS = "get_unique_sender_recipient_count_per_user"
DATASET = Dataset(accounts=20, users=5, folders=3)


def senders_of(found: Samples, user: str) -> dict[str, float]:
    return {
        dict(k)["sender"]: v
        for k, v in series(found, "whm_sender_unique_recipients").items()
        if dict(k)["user"] == user
    }


async def test_the_official_examples_report_the_mail_flow_of_a_user_the_target_does_not_list(
    start_whm, start_exporter
) -> None:
    # Every function answers with its official example (WHM API 1 reference: listaccts,
    # list_pops_for, get_mailbox_status_list, get_unique_recipient_count_per_sender_for_user,
    # emailtrack_user_stats): the listing names `username`, the mail flow `example`.
    canned = {
        "listaccts": fixture("listaccts.official_fields.json"),
        "list_pops_for": fixture("list_pops_for.official.json"),
        "get_mailbox_status_list": fixture("get_mailbox_status_list.official_items.json"),
        SENDERS: fixture("get_unique_recipient_count_per_sender_for_user.official.json"),
        FLOW: fixture("emailtrack_user_stats.official.json"),
    }
    whm: WHM = await start_whm(canned=canned)
    document = module(
        whm.url,
        discovery={"enabled": False},
        # No official example of the per-user totals: the senders are asked user by user.
        unique_recipients={"per_user_totals": False},
        users={"username": ["example1@example.com"]},
        # The simulator does not host example.com: its mail DNS is another test's (test_dns_auth).
        dns_auth={"enabled": False},
    )
    found = await (await start_exporter(document)).probe()
    assert value(found, "whm_user_mail_sent_messages", user="example", window="1h") == 14
    for limit in ("max_emails_per_hour", "max_defer_fail"):
        assert value(found, "whm_user_mail_limit_reached", user="example", limit=limit) == 1
    # Beside them, the other examples' figures for the listed user.
    assert (
        value(
            found,
            "whm_mailbox_messages",
            user="username",
            account="example1@example.com",
            mailbox="INBOX",
        )
        == 42000
    )
    assert senders_of(found, "username") == {"username@example.com": 51}
    # example tripped both of cPanel's limits: hot, so its senders were asked too (the canned
    # answer is the official one whatever the user).
    assert senders_of(found, "example") == {"username@example.com": 51}
    assert value(found, "whm_discovered_users") == 1
    assert not series(found, "whm_api_errors")


async def test_a_user_created_after_the_listing_shows_its_spam_signal_at_the_next_probe(
    start_whm, start_exporter
) -> None:
    whm: WHM = await start_whm(DATASET)
    # The early re-list waits a tenth of discovery.refresh after the last listing; the regular
    # one would come only after all of it.
    running = await start_exporter(module(whm.url, discovery={"refresh": "3s"}))
    await running.probe()
    listings = whm.sim.stats.calls["listaccts"]
    # A sixth account appears, and starts to spam at once.
    whm.sim.dataset = grown = replace(DATASET, users=6, accounts=24)
    new_user = grown.user_names[-1]
    spammer = grown.pops[new_user][0]
    whm.sim.start_spammer(spammer, 3000)
    found = await running.probe()
    # Its totals and its senders in this very probe, before any listing named it.
    total = grown.user_total(new_user, 3600) - grown.senders(new_user, 3600).get(spammer, 0)
    assert value(found, "whm_user_unique_recipients", user=new_user, window="1h") == total + 3000
    assert senders_of(found, new_user)[spammer] == 3000
    # It asks for a listing of its own (at the first server-wide answer a tenth of
    # discovery.refresh after the last one); once that came, the user's mailboxes follow.
    state = running.exporter.targets["t"].state

    async def listed() -> bool:
        await running.probe()
        return new_user in state.accounts

    await wait_until(listed, "the new user in the inventory", seconds=2.5)
    assert whm.sim.stats.calls["listaccts"] > listings
    await running.exporter.targets["t"].collection.settled()
    after = await running.probe()
    accounts = {dict(k)["account"] for k in series(after, "whm_mailbox_messages")}
    assert set(grown.pops[new_user]) <= accounts


async def test_a_system_user_and_a_suspended_one_keep_their_series(
    start_whm, start_exporter
) -> None:
    dataset = replace(DATASET, users=10, accounts=40, nobody_sends=True, suspended_sends=True)
    whm: WHM = await start_whm(dataset)
    found = await (await start_exporter(module(whm.url))).probe()
    suspended = dataset.suspended_sender_user
    assert suspended is not None
    totals = {dict(k)["user"] for k in series(found, "whm_user_unique_recipients")}
    flows = {dict(k)["user"] for k in series(found, "whm_user_mail_sent_messages")}
    assert {"nobody", suspended} <= totals
    assert {"nobody", suspended} <= flows
    # Neither is scraped account by account...
    mailboxes = {dict(k)["user"] for k in series(found, "whm_mailbox_messages")}
    assert not {"nobody", suspended} & mailboxes
    # ...but both send past priority_threshold: their senders are asked.
    assert set(senders_of(found, "nobody")) == set(dataset.nobody_senders)
    assert dataset.suspended_sender_address in senders_of(found, suspended)
    assert value(found, "whm_discovered_users") == 9


async def test_excluded_users_stay_out_and_a_refused_outsider_is_one_error(
    start_whm, start_exporter
) -> None:
    dataset = replace(DATASET, nobody_sends=True)
    whm: WHM = await start_whm(dataset, faults={f"{SENDERS}:nobody": "http500"})
    running = await start_exporter(module(whm.url))
    found = await running.probe()
    assert value(found, "whm_user_unique_recipients", user="nobody", window="1h") is not None
    # WHM refused nobody's senders: one error, not a missing item that would age.
    assert value(found, "whm_api_errors", function=SENDERS, reason="http") == 1
    assert value(found, "whm_data_items", function=SENDERS, state="missing") == 0
    excluded = await start_exporter(module(whm.url, discovery={"exclude_users": ["nobody"]}))
    found = await excluded.probe()
    users = {dict(k)["user"] for k in series(found, "whm_user_unique_recipients")}
    assert "nobody" not in users
    assert users
