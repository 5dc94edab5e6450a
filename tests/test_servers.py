"""The concurrency bound toward one WHM server: one per server however its URL is spelt, and a
bounded table of them for the hosts reached through allowed_targets."""

from __future__ import annotations

import asyncio

import pytest
from conftest import TOKEN, WHM, Running, loaded, value

from whm_exporter.config import Config
from whm_exporter.exporter import Exporter
from whm_exporter.metrics import ExporterMetrics
from whm_exporter.request import BadRequest
from whm_exporter.servers import MAX_UNLISTED_TARGETS, Servers, server_of, unlisted_url
from whm_exporter.simulator import Dataset
from whm_exporter.target import Target

DATASET = Dataset(accounts=12, users=3, folders=2)


@pytest.mark.parametrize(
    ("url", "server"),
    [
        ("https://WHM1.example:2087", ("https", "whm1.example", 2087)),
        ("https://whm1.example:2087/", ("https", "whm1.example", 2087)),
        ("https://whm1.example", ("https", "whm1.example", 2087)),
        ("HTTPS://Whm1.Example", ("https", "whm1.example", 2087)),
        ("http://whm1.example", ("http", "whm1.example", 2086)),
        ("http://whm1.example:2087", ("http", "whm1.example", 2087)),
        ("https://[2001:DB8::1]", ("https", "2001:db8::1", 2087)),
    ],
)
def test_a_server_is_its_scheme_lower_case_host_and_port(url: str, server: object) -> None:
    assert server_of(url) == server


async def test_one_bound_for_a_server_whatever_the_spelling_of_its_url(
    start_whm, start_exporter
) -> None:
    whm: WHM = await start_whm(DATASET, latency=0.05)
    port = whm.url.rsplit(":", 1)[1]
    # Each target has its own session, whose pool is as large as the bound: three pools hold
    # three times the bound, so only the shared bound can keep WHM at two calls.
    running: Running = await start_exporter(
        {
            "modules": {"default": {"token": TOKEN, "max_concurrency": 2}},
            "targets": {
                "a": {"url": f"http://localhost:{port}"},
                "b": {"url": f"http://LOCALHOST:{port}/"},
                "c": {"url": f"HTTP://LocalHost:{port}"},
            },
        }
    )
    found = await asyncio.gather(*(running.probe(t) for t in "abc"))
    assert [value(f, "whm_up") for f in found] == [1, 1, 1]
    assert whm.sim.stats.max_in_flight == 2


def test_bounds_of_unlisted_hosts_are_kept_in_a_bounded_lru() -> None:
    document = {
        "modules": {"default": {"token": TOKEN, "allowed_targets": [r"h\d+\.example"]}},
        "targets": {},
    }
    exporter = Exporter(loaded(document), ExporterMetrics(), None)
    first = exporter.resolve("h0.example", "default").bound
    for i in range(1, MAX_UNLISTED_TARGETS + 50):
        exporter.resolve(f"h{i}.example", "default")
    assert len(exporter.servers._unlisted_bounds) == MAX_UNLISTED_TARGETS
    # h0 fell out of both tables together: it gets a new target with a new bound.
    assert exporter.resolve("h0.example", "default").bound is not first
    recent = f"h{MAX_UNLISTED_TARGETS + 10}.example"
    assert exporter.resolve(recent, "default") is exporter.resolve(recent + ":2087", "default")


def test_a_server_used_often_keeps_its_bound_while_others_come_and_go() -> None:
    document = {
        "modules": {
            "a": {"token": TOKEN, "allowed_targets": [r".+\.example"]},
            "b": {"token": TOKEN, "allowed_targets": [r".+\.example"]},
        },
        "targets": {},
    }
    exporter = Exporter(loaded(document), ExporterMetrics(), None)
    busy = exporter.resolve("busy.example", "a").bound
    for i in range(3 * MAX_UNLISTED_TARGETS):
        exporter.resolve(f"h{i}.example", "a")
        assert exporter.resolve("busy.example", "a").bound is busy
    # Another module's target for the same server shares its bound.
    assert exporter.resolve("busy.example", "b").bound is busy


def test_an_unlisted_host_that_is_a_configured_server_shares_its_bound() -> None:
    document = {
        "modules": {"default": {"token": TOKEN, "allowed_targets": [r"whm1\.example"]}},
        "targets": {"t": {"url": "https://WHM1.example"}},
    }
    exporter = Exporter(loaded(document), ExporterMetrics(), None)
    unlisted = exporter.resolve("whm1.example:2087", "default")
    assert unlisted.bound is exporter.targets["t"].bound
    assert not exporter.servers._unlisted_bounds


def _config(**modules: dict[str, object]) -> Config:
    """Each module with its own target, all on one server spelt three ways."""
    spellings = ["https://whm1.example", "https://WHM1.example:2087", "HTTPS://whm1.example/"]
    return loaded(
        {
            "modules": {name: {"token": TOKEN, **m} for name, m in modules.items()},
            "targets": {
                name: {"url": spellings[i], "module": name} for i, name in enumerate(modules)
            },
        }
    ).config


def test_a_server_has_the_smallest_size_and_budget_of_the_modules_naming_it() -> None:
    servers = Servers(lambda target: None)
    servers.apply(
        _config(
            a={"max_concurrency": 4},
            b={"max_concurrency": 2, "load_budget": 0.5},
            c={"max_concurrency": 3, "load_budget": 0.3},
        )
    )
    bound = servers.bound("https://whm1.example:2087/")
    assert (bound.size, bound.pace.budget.rate) == (2, 0.3)


def test_a_reload_keeps_the_bound_of_a_server_unless_its_size_changed() -> None:
    servers = Servers(lambda target: None)
    servers.apply(_config(a={"max_concurrency": 2, "load_budget": 0.5}))
    first = servers.bound("https://whm1.example")
    servers.apply(_config(a={"max_concurrency": 2, "load_budget": 0.2}))
    assert servers.bound("https://whm1.example") is first
    # The budget (with what it has spent) stays, at the new rate.
    assert first.pace.budget.rate == 0.2
    servers.apply(_config(a={"max_concurrency": 3, "load_budget": 0.2}))
    assert servers.bound("https://whm1.example") is not first


def test_unlisted_targets_leave_at_a_reload_and_out_of_the_lru_retired() -> None:
    retired: list[Target] = []
    servers = Servers(retired.append)
    config = _config(a={"allowed_targets": [r".+"]})
    servers.apply(config)
    mc = config.modules["a"]

    def unlisted(host: str) -> Target:
        url = f"https://{host}:2087"
        return servers.unlisted_target("a", mc, url, lambda b: Target(url, url, mc, {}, b))

    first = unlisted("h0.example")
    assert unlisted("h0.example") is first
    for i in range(1, MAX_UNLISTED_TARGETS + 1):
        unlisted(f"h{i}.example")
    assert retired == [first]
    assert len(list(servers.unlisted())) == MAX_UNLISTED_TARGETS
    servers.apply(config)
    assert not list(servers.unlisted())
    assert len(retired) == MAX_UNLISTED_TARGETS + 1


@pytest.mark.parametrize(
    ("target", "host", "url"),
    [
        ("whm1.example", "whm1.example", "https://whm1.example:2087"),
        ("whm1.example:2086", "whm1.example", "https://whm1.example:2086"),
        ("http://whm1.example:2086/", "whm1.example", "http://whm1.example:2086"),
        ("[2001:db8::1]", "2001:db8::1", "https://[2001:db8::1]:2087"),
    ],
)
def test_an_unlisted_target_is_host_and_port(target: str, host: str, url: str) -> None:
    assert unlisted_url(target) == (host, url)


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("whm1.example:port", "bad port in target 'whm1.example:port'"),
        ("whm1.example/json-api", "target 'whm1.example/json-api' is not HOST[:PORT]"),
        ("whm1.example?x=1", "target 'whm1.example?x=1' is not HOST[:PORT]"),
        ("root@whm1.example", "target 'root@whm1.example' is not HOST[:PORT]"),
        ("ftp://whm1.example", "target 'ftp://whm1.example' has an unsupported scheme"),
    ],
)
def test_an_unlisted_target_that_is_not_host_and_port_is_a_bad_request(
    target: str, reason: str
) -> None:
    with pytest.raises(BadRequest) as err:
        unlisted_url(target)
    assert str(err.value) == reason
