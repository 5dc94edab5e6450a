"""Exim's queue (issue 26): fetch_mail_queue read as a stream and reduced to figures, from the
fixtures of its official example and of real servers' forms, through the client, and end to end
on the simulator at the issue's size (50,000 messages)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import orjson
import pytest
from conftest import WHM, fixture, module, only, series, value
from hypothesis import given, settings
from hypothesis import strategies as st
from statekit import answer, state_for

from whm_exporter.collect.state import Addresses
from whm_exporter.families.base import Served
from whm_exporter.families.mail_queue import FAMILY, QueuedDomain, QueuedSender, reduce, top
from whm_exporter.simulator import Dataset
from whm_exporter.simulator import queue as simulated
from whm_exporter.whm.errors import WHMError
from whm_exporter.whm.parse import Account
from whm_exporter.whm.queue import MAX_REFUSED_TEXTS, QueueCounts, QueueTally
from whm_exporter.whm.stream import MAX_DEPTH, Records

FUNCTION = "fetch_mail_queue"


def read(body: bytes, cutoffs: tuple[float, ...] = (), piece: int = 65536) -> QueueCounts:
    """``body`` fed to the stream reader in pieces of ``piece`` bytes, as the client does."""
    tally = QueueTally(cutoffs)
    reader = Records(FUNCTION, "records", tally.add)
    for start in range(0, len(body), piece):
        reader.feed(body[start : start + piece])
    reader.finish()
    return tally.counts()


def fixture_bytes(name: str) -> bytes:
    return orjson.dumps(fixture(name))


def expected(messages: list[dict[str, Any]], cutoffs: tuple[float, ...]) -> dict[str, Any]:
    """Every figure, computed plainly from the messages (the reference the reader must meet)."""
    senders = Counter(m["sender"] for m in messages if m["sender"])
    domains: Counter[str] = Counter()
    for m in messages:
        domains.update({r.rsplit("@", 1)[1].lower() for r in m["recipients"] if "@" in r})
    return {
        "messages": len(messages),
        "frozen": sum(m["frozen"] for m in messages),
        "bounces": sum(1 for m in messages if m["sender"] == ""),
        "size_bytes": sum(m["size"] for m in messages),
        "oldest": min((m["time"] for m in messages), default=None),
        "aged": tuple(sum(1 for m in messages if m["time"] < c) for c in cutoffs),
        "senders": senders,
        "domains": domains,
    }


def figures(counts: QueueCounts) -> dict[str, Any]:
    return {
        "messages": counts.messages,
        "frozen": counts.frozen,
        "bounces": counts.bounces,
        "size_bytes": counts.size_bytes,
        "oldest": counts.oldest,
        "aged": counts.aged,
        "senders": counts.senders,
        "domains": counts.domains,
    }


# --- the answers ---------------------------------------------------------------------------------


def test_the_official_example() -> None:
    counts = read(fixture_bytes("fetch_mail_queue.official.json"), (1371552781.0, 1371552782.0))
    assert (counts.messages, counts.frozen, counts.bounces) == (1, 0, 0)
    assert (counts.size_bytes, counts.oldest, counts.aged) == (14336, 1371552781, (0, 1))
    assert counts.senders == {"elvis@graceland.com": 1}
    assert counts.domains == {"graceland.com": 1}
    assert counts.users == {}
    assert counts.refused == 0


def test_real_servers_forms_a_bounce_frozen_a_held_message_and_a_delivered_address() -> None:
    body = fixture("fetch_mail_queue.real_forms.json")
    counts = read(orjson.dumps(body), (1717990000.0,))
    assert figures(counts) == expected(body["data"]["records"], (1717990000.0,))
    # The bounce (sender "") counts as a bounce, never as a sender.
    assert counts.bounces == 1
    assert "" not in counts.senders
    # One message to three addresses, two of them at one domain: that domain counts it once.
    assert counts.domains["mail.example"] == 2
    # Exim names the user of the message cPanel holds.
    assert counts.users == {"news@cedar003.example": "cedar003"}


def test_a_message_without_time_costs_only_itself() -> None:
    counts = read(fixture_bytes("fetch_mail_queue.malformed.json"))
    assert (counts.messages, counts.refused) == (1, 1)
    assert counts.size_bytes == 2048
    assert counts.refused_texts == ("queued message 1: has no 'time'",)


@pytest.mark.parametrize(
    ("change", "text"),
    [
        ({"time": "yesterday"}, "time is not a whole number: 'yesterday'"),
        ({"sender": None}, "has no sender string"),
        ({"recipients": "a@b.c"}, "has no recipients list"),
        ({"size": "14K"}, "size is not a whole number: '14K'"),
        ({"frozen": 2}, "frozen is not 0 or 1: '2'"),
        ({"frozen": "yes" * 20}, "frozen is not 0 or 1: 'yesyesyesyesyesyesye'"),
    ],
)
def test_a_message_with_a_bad_field_costs_only_itself(change: dict[str, Any], text: str) -> None:
    body = fixture("fetch_mail_queue.real_forms.json")
    body["data"]["records"][1].update(change)
    counts = read(orjson.dumps(body))
    assert (counts.messages, counts.refused) == (3, 1)
    assert counts.refused_texts == (f"queued message 1: {text}",)


def test_odd_but_readable_messages_count_as_real_servers_mean_them() -> None:
    messages = [
        # No size and no frozen flag: nothing known, none.
        {"time": 5, "sender": "a@b.example", "recipients": ["x@y@gmail.com"]},
        # Sizes as exim shows them, whole floats as JSON numbers may come; a user not a string.
        {"time": 7, "sender": "a@b.example", "recipients": [], "size": 14336.0, "user": 7},
        # Addresses without a usable domain name no recipient domain.
        {"time": 6, "sender": "", "recipients": ["@yahoo.com", "nodomain@", "local", 3, "z@q"]},
    ]
    body = orjson.dumps({"data": {"records": messages}, "metadata": {"result": 1}})
    counts = read(body)
    assert (counts.messages, counts.refused, counts.frozen) == (3, 0, 0)
    assert (counts.size_bytes, counts.oldest, counts.bounces) == (14336, 5, 1)
    assert counts.domains == {"gmail.com": 1, "yahoo.com": 1, "q": 1}
    assert counts.users == {}


def test_the_reader_counts_every_message_whatever_piece_it_came_in() -> None:
    # Over 64 KiB, the last piece holding nothing but the metadata.
    body = simulated.body(Dataset(queue_messages=1000), 1_700_000_000)
    tally = QueueTally(())
    reader = Records(FUNCTION, "records", tally.add)
    reader.feed(body[:70_000])
    reader.feed(body[70_000:-80])
    reader.feed(body[-80:])
    assert reader.finish() == 1000
    assert tally.counts().messages == 1000


def test_a_server_without_the_function_says_so() -> None:
    reason = "Unknown app (fetch_mail_queue) requested for this version (1) of the API."
    with pytest.raises(WHMError) as err:
        read(orjson.dumps({"metadata": {"result": 0, "reason": reason}}))
    assert err.value.unknown_function


def test_a_message_that_is_not_an_object_costs_only_itself() -> None:
    body = fixture("fetch_mail_queue.real_forms.json")
    body["data"]["records"].insert(0, ["not", "a", "message"])
    counts = read(orjson.dumps(body))
    assert (counts.messages, counts.refused) == (4, 1)
    assert counts.refused_texts == ("queued message 0: is list, expected an object",)


def test_refused_texts_stop_at_their_limit_and_the_count_goes_on() -> None:
    tally = QueueTally(())
    for _ in range(MAX_REFUSED_TEXTS + 5):
        tally.add({"sender": "a@b.c"})
    counts = tally.counts()
    assert counts.refused == MAX_REFUSED_TEXTS + 5
    assert len(counts.refused_texts) == MAX_REFUSED_TEXTS


def test_frozen_reads_ints_strings_and_booleans() -> None:
    tally = QueueTally(())
    for frozen in (1, "1", True, 0, "0", False):
        tally.add({"time": 1, "sender": "a@b.c", "recipients": [], "size": 1, "frozen": frozen})
    assert (tally.counts().messages, tally.counts().frozen) == (6, 3)


def test_an_empty_queue_has_no_oldest_message() -> None:
    body = orjson.dumps({"data": {"records": []}, "metadata": {"result": 1, "reason": "OK"}})
    counts = read(body, (1.0,))
    assert (counts.messages, counts.oldest, counts.aged) == (0, None, (0,))


@pytest.mark.parametrize(
    "body",
    [
        {"data": {}, "metadata": {"result": 1}},
        {"data": None, "metadata": {"result": 1}},
        {"data": {"records": {"a": 1}}, "metadata": {"result": 1}},
        {"metadata": {"result": 1}},
    ],
)
def test_an_answer_without_a_records_list_is_refused(body: Any) -> None:
    with pytest.raises(WHMError, match=r"^protocol: answer has no data\.records list"):
        read(orjson.dumps(body))


def test_a_big_answer_without_a_records_list_is_refused_too() -> None:
    # Past 64 KiB the answer is not kept whole: no record and no list is still no list.
    body = {"data": {"note": "x" * 70_000}, "metadata": {"result": 1}}
    with pytest.raises(WHMError, match=r"^protocol: answer has no data\.records list"):
        read(orjson.dumps(body))


def test_a_text_nested_too_deep_is_refused_before_it_is_parsed() -> None:
    # ijson's cost grows with the depth: 200,000 levels would hold the loop for minutes.
    deep = b'{"data": {"records": [' + b"[" * 200_000 + b"]" * 200_000 + b"]}}"
    with pytest.raises(ValueError, match=f"^nested deeper than {MAX_DEPTH}$"):
        read(deep)
    # Brackets inside an address count, balanced as they are there.
    message = {"time": 1, "sender": "postmaster@[192.0.2.1]", "recipients": ["a@[192.0.2.2]"]}
    nested = {"data": {"records": [message]}, "metadata": {"result": 1}}
    assert read(orjson.dumps(nested)).domains == {"[192.0.2.2]": 1}
    # As deep as it may be, and one more.
    for depth, fits in ((MAX_DEPTH - 3, True), (MAX_DEPTH - 2, False)):
        body = b'{"data": {"records": [' + b"[" * depth + b"]" * depth + b']}, "metadata":'
        body += b' {"result": 1}}'
        if fits:
            assert read(body).refused == 1
        else:
            with pytest.raises(ValueError, match=r"^nested deeper than"):
                read(body)


def test_an_answer_without_metadata_is_refused() -> None:
    with pytest.raises(WHMError, match=r"^protocol: answer has no metadata\.result"):
        read(orjson.dumps({"data": {"records": [{"time": 1}]}}))


def test_whms_refusal_keeps_its_reason() -> None:
    body = {"metadata": {"result": 0, "reason": "Permission denied"}}
    with pytest.raises(WHMError, match=r"^api: Permission denied$"):
        read(orjson.dumps(body))


@settings(max_examples=40, deadline=None)
@given(piece=st.integers(min_value=1, max_value=4096), seed=st.integers(0, 2**16))
def test_the_figures_do_not_depend_on_how_the_answer_arrives(piece: int, seed: int) -> None:
    ds = Dataset(seed=seed, queue_messages=60)
    started = 1_700_000_000
    messages = list(simulated.messages(ds, started))
    cutoffs = (started - 3600.0, started - 86400.0)
    counts = read(simulated.body(ds, started), cutoffs, piece)
    assert figures(counts) == expected(messages, cutoffs)


# --- what is kept: the top senders and domains, and each sender's user -------------------------


def test_top_keeps_the_biggest_ties_by_name_and_counts_the_rest() -> None:
    counts = Counter({"zeta.example": 5, "beta.example": 5, "alpha.example": 2, "mu.example": 9})
    assert top(counts, 3) == ([("mu.example", 9), ("beta.example", 5), ("zeta.example", 5)], 1)
    assert top(counts, 0) == (sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])), 0)


def counts_of(senders: dict[str, int], users: dict[str, str] | None = None) -> QueueCounts:
    domains = Counter({"gmail.com": 7, "yahoo.com": 3, "aol.com": 1})
    return QueueCounts(10, 1, 2, 4096, 5, (4, 1), Counter(senders), users or {}, domains, 0, ())


def test_each_sender_has_the_user_exim_names_else_the_owner_of_its_address_or_domain() -> None:
    state = state_for(discovery={"enabled": True}, mail_queue={"max_domains": 2})
    assert state.listaccts is not None
    listed = {
        "alice": Account("alice", False, domain="alice.example"),
        "bob": Account("bob", False, domain="bob.example"),
    }
    answer(state, state.listaccts, listed, 1.0)
    # Two users with addresses at one shared domain; one address written in capitals.
    answer(state, state.pops["alice"], Addresses(("Sales@Shared.example",)), 1.0)
    answer(state, state.pops["bob"], Addresses(("bob@shared.example", "x@bobs-shop.example")), 1.0)
    senders = {
        "sales@shared.example": 6,  # alice's address, at a domain bob has an address at too
        "bob@shared.example": 5,
        "news@bobs-shop.example": 4,  # not an address, at a domain only bob's addresses use
        "promo@alice.example": 3,  # alice's main domain (listaccts), no address there
        '"odd@x"@bob.example': 2,  # the domain is after the last @
        "held@alice.example": 2,  # Exim names the user cPanel holds it for
        "someone@elsewhere.example": 1,
    }
    queue = reduce(counts_of(senders, {"held@alice.example": "carol"}), state, ("1h", "1d"))
    assert queue.senders.records == (
        QueuedSender("sales@shared.example", "alice", 6),
        QueuedSender("bob@shared.example", "bob", 5),
        QueuedSender("news@bobs-shop.example", "bob", 4),
        QueuedSender("promo@alice.example", "alice", 3),
        QueuedSender('"odd@x"@bob.example', "bob", 2),
        QueuedSender("held@alice.example", "carol", 2),
        QueuedSender("someone@elsewhere.example", "", 1),
    )
    assert queue.domains.records == (QueuedDomain("gmail.com", 7), QueuedDomain("yahoo.com", 3))
    assert (queue.senders.dropped, queue.domains.dropped) == (0, 1)
    assert queue.aged == {"1h": 4, "1d": 1}
    assert (queue.messages, queue.frozen, queue.bounces, queue.size_bytes, queue.oldest) == (
        10,
        1,
        2,
        4096,
        5,
    )


# --- end to end -----------------------------------------------------------------------------------


async def test_a_50000_message_queue_every_figure_exact_and_asked_once_per_refresh(
    start_whm, start_exporter
) -> None:
    # The server: a third of the queue one sender's backlog to gmail.com, frozen
    # messages, bounces, the oldest three days old.
    ds = Dataset(accounts=40, users=8, queue_messages=50_000)
    whm: WHM = await start_whm(ds)
    running = await start_exporter(only(whm.url, "mail_queue", mail_queue={"max_senders": 5}))
    first = await running.probe()
    second = await running.probe()
    assert whm.sim.stats.calls[FUNCTION] == 1
    messages = list(simulated.messages(ds, whm.sim.started_wall))
    spammer = ds.heavy_sender_address
    assert spammer is not None
    # A third of the queue: every third message after the oldest.
    third = 16_667
    # The buckets count from the call's time; no message lies within minutes of an edge.
    now = time.time()
    want = expected(messages, (now - 3600, now - 6 * 3600, now - 86400))
    assert want["senders"][spammer] == third
    assert want["domains"][simulated.PROVIDER] == third
    assert want["frozen"]
    assert want["bounces"]
    assert want["oldest"] == whm.sim.started_wall - 3 * 86400
    for found in (first, second):
        assert value(found, "whm_mail_queue_messages") == want["messages"]
        assert value(found, "whm_mail_queue_frozen_messages") == want["frozen"]
        assert value(found, "whm_mail_queue_bounce_messages") == want["bounces"]
        assert value(found, "whm_mail_queue_size_bytes") == want["size_bytes"]
        assert value(found, "whm_mail_queue_oldest_message_timestamp_seconds") == want["oldest"]
        aged = {
            dict(k)["older_than"]: v
            for k, v in series(found, "whm_mail_queue_aged_messages").items()
        }
        assert aged == dict(zip(("1h", "6h", "1d"), want["aged"], strict=True))
        senders = {
            (dict(k)["sender"], dict(k)["user"]): v
            for k, v in series(found, "whm_mail_queue_sender_messages").items()
        }
        top = sorted(want["senders"].items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        assert senders == {(s, ds.owner(s) or ""): n for s, n in top}
        assert senders[(spammer, ds.heavy_user or "")] == third
        domains = {
            dict(k)["domain"]: v
            for k, v in series(found, "whm_mail_queue_recipient_domain_messages").items()
        }
        assert domains == dict(sorted(want["domains"].items(), key=lambda kv: (-kv[1], kv[0]))[:20])
        assert value(found, "whm_series_dropped", metric="whm_mail_queue_sender_messages") == (
            len(want["senders"]) - 5
        )
        assert not series(found, "whm_api_errors")
    assert value(first, "whm_data_items", function=FUNCTION, state="fresh") == 1
    assert value(second, "whm_data_items", function=FUNCTION, state="kept") == 1


async def test_a_sender_not_on_the_server_has_an_empty_user_and_exims_user_wins(
    start_whm, start_exporter
) -> None:
    ds = Dataset(accounts=8, users=2, queue_messages=300, spam_action="hold")
    whm: WHM = await start_whm(ds)
    found = await (
        await start_exporter(only(whm.url, "mail_queue", mail_queue={"max_senders": 0}))
    ).probe()
    users = {
        dict(k)["sender"]: dict(k)["user"] for k in series(found, "whm_mail_queue_sender_messages")
    }
    assert users[ds.heavy_sender_address or ""] == ds.heavy_user
    messages = list(simulated.messages(ds, whm.sim.started_wall))
    # Every sender of the simulated queue is an address of the server.
    assert users == {m["sender"]: ds.owner(m["sender"]) for m in messages if m["sender"]}


async def test_a_queue_beyond_its_answer_limit_is_an_error_naming_the_size_and_the_rest_stays(
    start_whm, start_exporter
) -> None:
    ds = Dataset(accounts=8, users=2, queue_messages=2_000)
    whm: WHM = await start_whm(ds)
    config = module(whm.url, mail_queue={"max_response_bytes": 65536})
    found = await (await start_exporter(config)).probe()
    assert value(found, "whm_api_errors", function=FUNCTION, reason="protocol") == 1
    assert not series(found, "whm_mail_queue_messages")
    assert value(found, "whm_up") == 1
    assert value(found, "whm_data_items", function="get_mailbox_status_list", state="missing") == 0
    assert len(simulated.body(ds, whm.sim.started_wall)) > 65536


async def test_a_reseller_refused_costs_one_error_per_refresh_and_the_probe_is_whole(
    start_whm, start_exporter
) -> None:
    ds = Dataset(accounts=8, users=2, folders=2)
    whm: WHM = await start_whm(ds, faults={FUNCTION: "api_denied"})
    running = await start_exporter(module(whm.url))
    first = await running.probe()
    assert value(first, "whm_api_errors", function=FUNCTION, reason="api") == 1
    for found in (first, await running.probe(), await running.probe()):
        assert value(found, "whm_up") == 1
        assert value(found, "whm_probe_deadline_exceeded") == 0
        assert value(found, "whm_data_items", function=FUNCTION, state="missing") == 1
        assert (
            value(found, "whm_data_items", function="get_mailbox_status_list", state="missing") == 0
        )
        assert not series(found, "whm_mail_queue_messages")
    assert whm.sim.stats.calls[FUNCTION] == 1
    assert value(found, "whm_api_call_errors_total", function=FUNCTION, reason="api") == 1


@pytest.mark.parametrize(
    "fault", ["garbage", "html200", "empty", "list_body", "deep_nesting", "deeper_nesting"]
)
async def test_an_answer_cut_short_or_not_json_is_a_protocol_error(
    start_whm, start_exporter, fault: str
) -> None:
    whm: WHM = await start_whm(Dataset(accounts=4, users=1), faults={FUNCTION: fault})
    found = await (await start_exporter(only(whm.url, "mail_queue"))).probe()
    assert value(found, "whm_api_errors", function=FUNCTION, reason="protocol") == 1
    assert not series(found, "whm_mail_queue_messages")
    assert value(found, "whm_up") == 1


async def test_no_probe_waits_for_a_refresh_of_the_queue_only_for_its_first_reading(
    start_whm, start_exporter
) -> None:
    # exim -bpra over a big queue takes longer than a scrape: a probe serves the last reading.
    ds = Dataset(accounts=8, users=2, queue_messages=90)
    whm: WHM = await start_whm(ds)
    running = await start_exporter(module(whm.url, mail_queue={"refresh": "0s"}))
    first = await running.probe()
    assert value(first, "whm_mail_queue_messages") == 90
    # From now on the queue never answers (the call stays in flight).
    whm.sim.knobs.faults[FUNCTION] = "slow"
    for _ in range(2):
        found = await running.probe(**{"X-Prometheus-Scrape-Timeout-Seconds": "30"})
        assert value(found, "whm_probe_deadline_exceeded") == 0
        assert value(found, "whm_mail_queue_messages") == 90
        assert value(found, "whm_data_items", function=FUNCTION, state="kept") == 1
    assert whm.sim.stats.calls[FUNCTION] == 2


# --- the family's call and what it keeps ---------------------------------------------------------


def test_the_call_reads_the_whole_queue_as_a_stream_with_the_sections_own_limits() -> None:
    state = state_for(mail_queue={"request_timeout": "90s", "max_response_bytes": 2**20})
    assert state.queue is not None
    call = FAMILY.plan(state.queue, state, 1_700_000_000.0)
    assert call is not None
    assert (call.function, call.endpoint, call.subject, dict(call.params)) == (
        FUNCTION,
        FUNCTION,
        "",
        {},
    )
    assert (call.timeout, call.max_bytes) == (90.0, 2**20)
    assert call.stream is not None
    # Its reader knows the function: a server without it says so.
    reader = call.stream()
    reason = "Unknown app (fetch_mail_queue) requested for this version (1) of the API."
    reader.feed(orjson.dumps({"metadata": {"result": 0, "reason": reason}}))
    with pytest.raises(WHMError) as err:
        reader.finish()
    assert err.value.unknown_function


def test_each_message_refused_is_an_error_of_its_own_up_to_a_limit() -> None:
    state = state_for(mail_queue={"age_buckets": ["1h"]})
    assert state.queue is not None
    call = FAMILY.plan(state.queue, state, 1_700_000_000.0)
    assert call is not None
    assert call.stream is not None
    good = {"time": 1_699_999_000, "sender": "a@b.example", "recipients": ["c@gmail.com"]}
    messages = [good, *([{"sender": "x@y.example"}] * (MAX_REFUSED_TEXTS + 3))]
    reader = call.stream()
    reader.feed(orjson.dumps({"data": {"records": messages}, "metadata": {"result": 1}}))
    problems = call.keep(reader.finish(), 5.0) or []
    assert [(p.reason, p.detail) for p in problems] == [
        *(
            ("protocol", f"record refused: queued message {n}: has no 'time'")
            for n in range(1, MAX_REFUSED_TEXTS + 1)
        ),
        ("protocol", "3 more queued messages refused"),
    ]
    queue = state.queue.answer
    assert queue is not None
    assert (queue.messages, queue.aged, state.queue.answered_at) == (1, {"1h": 0}, 5.0)


def test_without_the_section_a_probe_serves_no_queue() -> None:
    state = state_for()
    assert state.queue is None
    served = FAMILY.serve(state, Served(10.0, 0.0, set()))
    assert served == {"mail_queue": None}
