"""The mail domains' SPF, DKIM and PTR records (issue 26): validate_current_spfs,
validate_current_dkims and validate_current_ptrs, from the fixtures of their official examples
and of real servers' forms, and end to end on the simulator: batches of domains, the bisection
that finds a domain WHM refuses, a function refused to the token as a whole, probes that never
wait for these calls, and answers kept across a restart."""

from __future__ import annotations

import asyncio
import functools
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import WHM, Running, fixture, module, only, series, value
from statekit import state_for

from whm_exporter.collect.state import DNS_KINDS, Addresses, Kind
from whm_exporter.families.base import Call
from whm_exporter.families.dns_auth import FAMILY, VALID, Checked
from whm_exporter.simulator import Dataset
from whm_exporter.simulator.dataset import DEMO, DNS_PROBLEMS
from whm_exporter.whm import parse
from whm_exporter.whm.errors import WHMError
from whm_exporter.whm.parse import Account

METRIC = "whm_domain_mail_auth_valid"
FUNCTIONS = [k.value for k in DNS_KINDS]
SPF, DKIM, PTR = FUNCTIONS
RECORDS = dict(zip(FUNCTIONS, ("spf", "dkim", "ptr"), strict=True))
FOREIGN = "foreign.example"

# --- the answers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "states"),
    [
        (f"{SPF}.official.json", (("example2.com", "ERROR"),)),
        (f"{DKIM}.official.json", (("example.com", "VALID"),)),
        (f"{PTR}.official.json", (("example.com", "MISSING_PTR"),)),
        (f"{SPF}.invalid.json", (("acme001.example", "INVALID"), ("birch002.example", "VALID"))),
        (
            f"{PTR}.helo_mismatch.json",
            (("acme001.example", "HELO_MISMATCH"), ("birch002.example", "VALID")),
        ),
    ],
)
def test_official_examples_and_real_servers_states(name: str, states: tuple[Any, ...]) -> None:
    function = name.split(".")[0]
    assert parse.domain_checks(fixture(name), function) == parse.DomainChecks(states, ())


@pytest.mark.parametrize("function", FUNCTIONS)
def test_an_item_without_its_state_is_refused_alone(function: str) -> None:
    found = parse.domain_checks(fixture(f"{function}.malformed.json"), function)
    # DKIM's items name the record (default._domainkey.<domain>): read as the domain.
    assert found.states == (("birch002.example", "VALID"),)
    assert found.bad_records == ("acme001.example has no 'state'",)


def test_an_item_not_an_object_or_without_a_domain_is_refused_alone() -> None:
    body = fixture(f"{SPF}.invalid.json")
    body["data"]["payload"] += ["text", {"state": "VALID"}, {"domain": "", "state": "VALID"}]
    found = parse.domain_checks(body, SPF)
    assert len(found.states) == 2
    assert [b.split(":")[0] for b in found.bad_records] == [
        "payload item 2 is str, expected an object",
        "payload item 3 has no 'domain'",
        "payload item 4 domain is not a non-empty string",
    ]


def test_a_refused_call_is_the_calls_error() -> None:
    body = {"metadata": {"command": SPF, "result": 0, "reason": "Permission denied"}}
    with pytest.raises(WHMError) as caught:
        parse.domain_checks(body, SPF)
    assert (caught.value.reason, caught.value.detail) == ("api", "Permission denied")


# --- the domains ---------------------------------------------------------------------------------


def test_the_domains_are_the_main_domains_and_the_addresses_each_with_its_user() -> None:
    state = state_for({"carol": ("x@Shared.Example",)}, dns_auth={"enabled": True})
    assert state.listaccts is not None
    # Nothing to check yet: the items wait outside their lanes.
    assert all(item.lane is None for item in state.dns_auth.values())
    accounts = {
        "alice": Account("alice", False, domain="alice.example"),
        "bob": Account("bob", False, domain="shared.example"),
        "carol": Account("carol", False, domain="carol.example"),
    }
    state.start(state.listaccts, 1.0, urgent=False)
    state.answered(state.listaccts, accounts, 1.0)
    assert all(item.lane is not None for item in state.dns_auth.values())
    # Read before the addresses come: what changes the inventory changes the answer.
    assert state.domain_owners()["shared.example"] == "bob"
    state.start(state.pops["alice"], 2.0, urgent=False)
    state.answered(state.pops["alice"], Addresses(("a@alice.example", "b@other.example")), 2.0)
    # A domain is bob's whose main domain it is, whoever else has an address at it.
    assert state.domain_owners() == {
        "alice.example": "alice",
        "other.example": "alice",
        "shared.example": "bob",
        "carol.example": "carol",
    }
    # A new listing: carol's main domain changed; then bob gone, his to carol, who has an
    # address there.
    state.start(state.listaccts, 3.0, urgent=False)
    moved = {**accounts, "carol": Account("carol", False, domain="carol.example.net")}
    state.answered(state.listaccts, moved, 3.0)
    assert state.domain_owners()["carol.example.net"] == "carol"
    state.start(state.listaccts, 4.0, urgent=False)
    state.answered(state.listaccts, {u: moved[u] for u in ("alice", "carol")}, 4.0)
    assert state.domain_owners()["shared.example"] == "carol"
    assert "bob" not in state.domain_owners().values()


# --- end to end, on the simulator ----------------------------------------------------------------


def spy(whm: WHM) -> list[tuple[str, tuple[str, ...]]]:
    """Every validate_current_* call the simulator answers: (function, its domains)."""
    asked: list[tuple[str, tuple[str, ...]]] = []
    real = whm.sim.answer

    def answer(function: str, params: Any) -> dict[str, Any]:
        if function in FUNCTIONS:
            asked.append((function, tuple(params.getall("domain", []))))
        return real(function, params)

    whm.sim.answer = answer  # type: ignore[method-assign]
    return asked


async def passed(running: Running, target: str = "t") -> dict[Any, float]:
    """A probe, the calls it left going on (the mail DNS, in the background), and the probe
    after them."""
    await running.probe(target)
    await running.exporter.targets[target].collection.settled()
    return await running.probe(target)


def by_record(found: Any) -> dict[tuple[str, str, str], float]:
    return {
        (dict(k)["user"], dict(k)["domain"], dict(k)["record"]): v
        for k, v in series(found, METRIC).items()
    }


async def test_each_domains_records_valid_or_not_and_the_state_on_the_debug_page(
    start_whm, start_exporter
) -> None:
    ds = Dataset()
    whm: WHM = await start_whm(ds)
    running = await start_exporter(module(whm.url))
    found = by_record(await passed(running))
    users = [u for u in ds.user_names if not ds.suspended(u)]
    assert len(found) == 3 * len(users)
    wrong = {(ds.user_names[i], record): state for i, record, state in DNS_PROBLEMS}
    for user in users:
        for record in RECORDS.values():
            expected = 0 if (user, record) in wrong else 1
            assert found[(user, ds.domain(user), record)] == expected, (user, record)
    # The heavy sender's domain: an SPF record that does not name the server.
    assert found[("acme001", "acme001.example", "spf")] == 0
    assert found[("birch002", "birch002.example", "spf")] == 1
    status, text = await running.get("/probe?target=t&debug=true")
    assert status == 200
    assert "\nMail DNS records cPanel does not find valid, and domains left out:\n" in text
    assert "acme001.example spf: INVALID (user acme001)" in text
    assert "cedar003.example dkim: MISSING (user cedar003)" in text
    assert "birch002.example ptr: HELO_MISMATCH (user birch002)" in text
    assert "birch002.example spf" not in text
    again = await running.probe()
    assert not series(again, "whm_api_errors")
    for function in FUNCTIONS:
        assert value(again, "whm_data_items", function=function, state="kept") == 1


async def test_every_record_valid_with_the_simulators_flag(start_whm, start_exporter) -> None:
    from whm_exporter.simulator.__main__ import build, parse_args

    ds = build(parse_args(["--dns-all-valid"])).dataset
    assert ds.dns_all_valid
    assert not DEMO.dns_all_valid
    whm: WHM = await start_whm(ds)
    found = by_record(await passed(await start_exporter(only(whm.url, "dns_auth"))))
    assert found
    assert set(found.values()) == {1}


# 120 users, every tenth suspended: 108 domains, three batches of at most 50.
MANY = Dataset(users=120, accounts=0)
DOMAINS = sorted(MANY.domain(u) for u in MANY.user_names if not MANY.suspended(u))


async def test_domains_are_asked_in_batches_of_domains_per_call(start_whm, start_exporter) -> None:
    whm: WHM = await start_whm(MANY)
    asked = spy(whm)
    found = by_record(await passed(await start_exporter(only(whm.url, "dns_auth"))))
    assert len(found) == 3 * len(DOMAINS) == 324
    for function in FUNCTIONS:
        sizes = [len(d) for f, d in asked if f == function]
        assert sizes == [50, 50, 8], function
        assert sorted(d for f, ds in asked if f == function for d in ds) == DOMAINS
    assert {f: whm.sim.stats.calls[f] for f in FUNCTIONS} == dict.fromkeys(FUNCTIONS, 3)


async def test_a_foreign_domain_is_found_by_bisection_and_asked_alone_at_the_next_refresh(
    start_whm, start_exporter
) -> None:
    whm: WHM = await start_whm(MANY)
    asked = spy(whm)
    # An address at a domain the server does not host: WHM refuses every call naming it.
    document = only(
        whm.url,
        "dns_auth",
        users={"acme001": [f"info@{FOREIGN}"]},
        dns_auth={"refresh": "0s"},
        load_budget=0,
    )
    running = await start_exporter(document)
    collection = running.exporter.targets["t"].collection
    await running.probe()
    await collection.settled()
    first = list(asked)
    errors = {f: collection.state.errors_total[f]["api"] for f in FUNCTIONS}
    # Refresh 0s: this probe serves the first pass and starts the next.
    found = await running.probe()
    served = by_record(found)
    # Every domain served but the foreign one.
    assert sorted({d for _, d, _ in served}) == DOMAINS
    assert len(served) == 3 * len(DOMAINS)
    for function in FUNCTIONS:
        calls = [d for f, d in first if f == function]
        refused = [d for d in calls if FOREIGN in d]
        # The batch holding it, then halves down to the domain alone: log2(50) splits or so.
        assert len(refused[0]) == 50, function
        assert refused[-1] == (FOREIGN,), function
        assert [len(d) for d in refused] == sorted((len(d) for d in refused), reverse=True)
        assert len(refused) <= 1 + math.ceil(math.log2(50))
        assert len(calls) <= 3 + 2 * math.ceil(math.log2(50)) + 1
        assert errors[function] == len(refused)
    # The next pass asks it alone, once, after the batches.
    await collection.settled()
    second = asked[len(first) :]
    for function in FUNCTIONS:
        calls = [d for f, d in second if f == function]
        assert [len(d) for d in calls] == [50, 50, 8, 1], function
        assert calls[-1] == (FOREIGN,)
        assert collection.state.errors_total[function]["api"] == errors[function] + 1
    _, text = await running.get("/probe?target=t&debug=true")
    for record in RECORDS.values():
        assert f"{FOREIGN} {record}: left out, API failure: (XID " in text
    assert f"does not control a domain named “{FOREIGN}”" in text
    assert by_record(await running.probe()) == served


async def test_a_batch_that_fails_otherwise_costs_only_its_domains_which_keep_their_states(
    start_whm, start_exporter
) -> None:
    # A batch whose lookups time out (one domain's slow nameservers) or whose answer is broken
    # is not a refusal: no search, the other batches stand, its domains keep the last pass's.
    whm: WHM = await start_whm(MANY)
    real = whm.sim.answer
    broken: set[str] = set()

    def answer(function: str, params: Any) -> dict[str, Any]:
        if function == SPF and broken & set(params.getall("domain", [])):
            return {"metadata": {"result": 1, "reason": "OK"}}  # no data: a protocol error
        return real(function, params)

    whm.sim.answer = answer  # type: ignore[method-assign]
    running = await start_exporter(
        only(whm.url, "dns_auth", dns_auth={"refresh": "0s"}, load_budget=0)
    )
    collection = running.exporter.targets["t"].collection
    first = by_record(await passed(running))
    assert len(first) == 3 * len(DOMAINS)
    # Refresh 0s: that probe began another pass.
    await collection.settled()
    # The next pass: the second batch of SPF checks comes back broken.
    broken.add(DOMAINS[60])
    asked = spy(whm)
    await running.probe()
    await collection.settled()
    assert [len(d) for f, d in asked if f == SPF] == [50, 50, 8]
    assert collection.state.errors_total[SPF]["protocol"] == 1
    item = collection.state.dns_auth[Kind.SPF]
    assert item.last_ok
    assert item.answer is not None
    # Every domain still has its state: the broken batch's from the pass before.
    assert sorted(item.answer.states) == DOMAINS
    spf = {d for (_, d, r), v in first.items() if r == "spf" and v == 1}
    assert {d for d, state in item.answer.states.items() if state == "VALID"} == spf
    # A pass whose first call fails that way has nothing to keep: the item failed.
    broken.add(DOMAINS[0])
    await running.probe()
    await collection.settled()
    assert not collection.state.dns_auth[Kind.SPF].last_ok
    assert collection.state.errors_total[SPF]["protocol"] == 2


async def test_a_function_refused_to_the_token_costs_three_calls_per_refresh(
    start_whm, start_exporter
) -> None:
    whm: WHM = await start_whm(MANY, faults={SPF: "api_denied"})
    running = await start_exporter(module(whm.url))
    first = await passed(running)
    # The first batch, then its two halves refused alike: no domain is to blame.
    assert whm.sim.stats.calls[SPF] == 3
    assert value(first, "whm_api_call_errors_total", function=SPF, reason="api") == 3
    for found in (first, await passed(running), await passed(running)):
        # The rest of the probe whole, and not held to its deadline by the refused calls.
        assert value(found, "whm_up") == 1
        assert value(found, "whm_probe_deadline_exceeded") == 0
        assert value(found, "whm_data_items", function=SPF, state="missing") == 1
        assert value(found, "whm_data_items", function=DKIM, state="missing") == 0
        inbox = {"user": "acme001", "account": "acme001", "mailbox": "INBOX"}
        assert value(found, "whm_mailbox_messages", **inbox) is not None
        records = Counter(r for _, _, r in by_record(found))
        assert records == {"dkim": len(DOMAINS), "ptr": len(DOMAINS)}
    # Failed, it waits its refresh (6h): never asked again at the next probes.
    assert whm.sim.stats.calls[SPF] == 3
    assert value(found, "whm_api_call_errors_total", function=SPF, reason="api") == 3


async def test_a_server_without_the_function_fails_the_item_without_a_search(
    start_whm, start_exporter
) -> None:
    unknown = {
        "metadata": {
            "command": PTR,
            "reason": f"Unknown app ({PTR}) requested for this version (1) of the API.",
            "result": 0,
            "version": 1,
        }
    }
    whm: WHM = await start_whm(MANY, canned={PTR: unknown})
    found = await passed(await start_exporter(only(whm.url, "dns_auth")))
    assert whm.sim.stats.calls[PTR] == 1
    assert value(found, "whm_data_items", function=PTR, state="missing") == 1
    assert Counter(r for _, _, r in by_record(found)) == {"spf": 108, "dkim": 108}


async def test_no_probe_waits_for_the_mail_dns(start_whm, start_exporter) -> None:
    # validate_current_spfs never answers (until the request timeout, 10 s).
    whm: WHM = await start_whm(Dataset(), faults={SPF: "slow"})
    running = await start_exporter(only(whm.url, "dns_auth"))
    await running.probe()

    async def stuck() -> None:
        while True:
            whm.sim.stats.called.clear()
            if whm.sim.stats.calls[SPF]:
                return
            await whm.sim.stats.called.wait()

    await asyncio.wait_for(stuck(), 10)
    spf = running.exporter.targets["t"].state.dns_auth[Kind.SPF]
    found = await running.probe(**{"X-Prometheus-Scrape-Timeout-Seconds": "30"})
    # Answered while the call was (and is still) in flight.
    assert spf.in_flight
    assert value(found, "whm_probe_deadline_exceeded") == 0
    # Well within the call's 10 s: the probe did not wait for it.
    duration = value(found, "whm_probe_duration_seconds")
    assert duration is not None
    assert duration < 5
    assert value(found, "whm_up") == 1
    assert value(found, "whm_data_items", function=SPF, state="missing") == 1


async def test_the_answers_are_kept_across_a_restart(
    start_whm, start_exporter, tmp_path: Path
) -> None:
    whm: WHM = await start_whm(Dataset())
    kept = functools.partial(start_exporter, config_file=True, storage=tmp_path / "state")
    first: Running = await kept(only(whm.url, "dns_auth", users={"acme001": [f"info@{FOREIGN}"]}))
    before = await passed(first)
    await first.session.close()
    await first.runner.cleanup()
    calls = {f: whm.sim.stats.calls[f] for f in FUNCTIONS}
    again: Running = await kept(only(whm.url, "dns_auth", users={"acme001": [f"info@{FOREIGN}"]}))
    after = await passed(again)
    assert series(after, METRIC) == series(before, METRIC)
    assert by_record(after)[("acme001", "acme001.example", "spf")] == 0
    # Within the refresh: served from the kept state, not asked again.
    assert {f: whm.sim.stats.calls[f] for f in FUNCTIONS} == calls
    _, text = await again.get("/probe?target=t&debug=true")
    # What was left out, and why, is kept too.
    assert f"{FOREIGN} spf: left out, API failure: (XID " in text


def test_the_demo_has_a_sending_domain_with_an_invalid_spf_record() -> None:
    heavy = DEMO.heavy_user
    assert heavy is not None
    assert DEMO.mail_auth(DEMO.domain(heavy))["spf"] == "INVALID"
    assert DEMO.mail_flow(heavy, 3600).sent > 0


# --- a pass, call by call (as collect/run.py's _ask makes them) ---------------------------------

SMALL = {"u1": tuple(f"info@d{n:02}.example" for n in range(8))}


def domains(call: Call) -> tuple[str, ...]:
    batch = call.params["domain"]
    assert isinstance(batch, tuple)
    return batch


def valid(batch: tuple[str, ...]) -> dict[str, Any]:
    payload = [{"domain": d, "state": VALID} for d in batch]
    return {"data": {"payload": payload}, "metadata": {"result": 1, "reason": "OK"}}


def drive(state: Any, answer: Any, kind: Kind = Kind.SPF) -> list[tuple[str, ...]]:
    """One pass of ``kind``'s item: each call's domains, answered by ``answer`` (a body, or
    raises WHMError), as the runner chains them."""
    item = state.dns_auth[kind]
    call = FAMILY.plan(item, state, 0.0)
    asked: list[tuple[str, ...]] = []
    now = 100.0
    while call is not None:
        batch = domains(call)
        asked.append(batch)
        now += 1.0
        try:
            body = answer(batch)
        except WHMError as err:
            call = call.on_error(err) if call.on_error is not None else None
            continue
        call.keep(body, now)
        call = call.then() if call.then is not None else None
    return asked


def refusing(*foreign: str) -> Any:
    """WHM's answer: every call naming a foreign domain refused in cPanel's words (the first
    it names), the others valid."""

    def answer(batch: tuple[str, ...]) -> dict[str, Any]:
        named = [d for d in batch if d in foreign]
        if named:
            raise WHMError("api", f"API failure: (XID {len(batch)}x) no domain “{named[0]}”.")
        return valid(batch)

    return answer


def test_two_foreign_domains_in_either_half_are_each_found_and_the_rest_answered() -> None:
    # Different reasons (each names its domain): two domains to blame, not a refused function.
    state = state_for(SMALL, dns_auth={"enabled": True, "domains_per_call": 8})
    domains = sorted(state.domain_owners())
    foreign = (domains[1], domains[6])
    asked = drive(state, refusing(*foreign))
    answer = state.dns_auth[Kind.SPF].answer
    assert answer is not None
    assert sorted(answer.left_out) == sorted(foreign)
    assert sorted(answer.states) == sorted(set(domains) - set(foreign))
    # Every domain asked in a call that answered, or left out alone.
    assert asked[0] == tuple(domains)
    assert {d for b in asked for d in b} == set(domains)
    assert (domains[1],) in asked
    assert (domains[6],) in asked


def test_a_refusal_alike_in_both_halves_is_the_function_refused() -> None:
    state = state_for(SMALL, dns_auth={"enabled": True, "domains_per_call": 8})

    def refused(batch: tuple[str, ...]) -> dict[str, Any]:
        raise WHMError("api", f"API failure: (XID {len(batch)}) Permission denied")

    assert [len(b) for b in drive(state, refused)] == [8, 4, 4]
    assert state.dns_auth[Kind.SPF].answer is None


def test_each_batch_names_its_domains_for_the_log_and_counts_its_odd_records() -> None:
    state = state_for(SMALL, dns_auth={"enabled": True, "domains_per_call": 5})
    item = state.dns_auth[Kind.SPF]
    call = FAMILY.plan(item, state, 0.0)
    assert call is not None
    batch = domains(call)
    assert call.subject == f"{batch[0]} and 4 more"
    assert call.timeout == 120.0
    # One domain answered twice (invalid once), one not asked, one missing, one without state.
    payload = [
        {"domain": batch[0], "state": "INVALID"},
        {"domain": batch[0], "state": VALID},
        {"domain": "other.example", "state": VALID},
        {"domain": batch[1], "state": VALID},
        {"domain": batch[2], "state": VALID},
        {"domain": batch[3]},
    ]
    body = {"data": {"payload": payload}, "metadata": {"result": 1}}
    problems = call.keep(body, 5.0) or []
    assert [(p.reason, p.detail) for p in problems] == [
        ("protocol", f"record refused: {batch[3]} has no 'state'"),
        ("protocol", "record refused: other.example: not asked"),
        ("protocol", f"record refused: {batch[3]}: not in the answer"),
        ("protocol", f"record refused: {batch[4]}: not in the answer"),
    ]
    assert call.then is not None
    last = call.then()
    assert last is not None
    assert last.subject == domains(last)[0] + " and 2 more"
    last.keep(valid(domains(last)), 6.0)
    assert last.then is not None
    assert last.then() is None
    answer = item.answer
    assert answer is not None
    assert answer.states[batch[0]] == "INVALID"
    assert item.answered_at == 6.0


def test_domains_the_inventory_gains_during_a_pass_are_asked_before_it_ends() -> None:
    state = state_for(SMALL, dns_auth={"enabled": True, "domains_per_call": 3})
    answered: list[tuple[str, ...]] = []

    def answer(batch: tuple[str, ...]) -> dict[str, Any]:
        if len(answered) == 2:
            # Addresses at two new domains listed while the pass asks its last batch.
            state.explicit = {"u1": (*SMALL["u1"], "new@late.example", "new@later.example")}
            state._sync_user("u1")
        answered.append(batch)
        return valid(batch)

    asked = drive(state, answer)
    assert asked[-1] == ("late.example", "later.example")
    assert [len(b) for b in asked] == [3, 3, 2, 2]
    kept = state.dns_auth[Kind.SPF].answer
    assert kept is not None
    assert {"late.example", "later.example"} <= kept.states.keys()


@pytest.mark.parametrize("reason", ["auth", "role_disabled"])
def test_credentials_or_a_role_refused_mid_pass_fail_the_item(reason: str) -> None:
    state = state_for(SMALL, dns_auth={"enabled": True, "domains_per_call": 3})
    answered: list[tuple[str, ...]] = []

    def answer(batch: tuple[str, ...]) -> dict[str, Any]:
        answered.append(batch)
        if len(answered) == 2:
            raise WHMError(reason, "refused")  # type: ignore[arg-type]
        return valid(batch)

    assert [len(b) for b in drive(state, answer)] == [3, 3]
    assert state.dns_auth[Kind.SPF].answer is None


def test_a_domain_asked_alone_is_named_alone() -> None:
    state = state_for(SMALL, dns_auth={"enabled": True, "domains_per_call": 1})
    call = FAMILY.plan(state.dns_auth[Kind.SPF], state, 0.0)
    assert call is not None
    assert call.subject == domains(call)[0] == "d00.example"


def test_a_pass_with_no_domain_answers_nothing_new_and_keeps_the_last() -> None:
    state = state_for({"u1": ("u1",)}, dns_auth={"enabled": True})
    item = state.dns_auth[Kind.SPF]
    item.attempted_at = 7.0
    assert FAMILY.plan(item, state, 0.0) is None
    assert (item.answer, item.answered_at) == (Checked({}, {}), 7.0)
    kept = Checked({"a.example": VALID}, {})
    item.answer, item.answered_at, item.attempted_at = kept, 3.0, 9.0
    assert FAMILY.plan(item, state, 0.0) is None
    assert (item.answer, item.answered_at) == (kept, 3.0)
