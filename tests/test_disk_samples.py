"""Disk use per address (discovery through list_pops_with_disk) as a probe serves it
(probe.snapshot): the main mailbox under its user's name, only the accounts the user filters
keep, only answers within mailboxes.max_age, in the order WHM listed them."""

from __future__ import annotations

from whm_exporter.collect.run import Bound
from whm_exporter.collect.state import Addresses
from whm_exporter.config import build_config
from whm_exporter.probe import snapshot
from whm_exporter.snapshot import DiskSample
from whm_exporter.target import Target
from whm_exporter.whm.parse import Account, Mailbox


def test_disk_samples_are_of_the_kept_accounts_of_fresh_answers_in_order() -> None:
    discovery = {"function": "list_pops_with_disk", "exclude_accounts": ["excluded@.*"]}
    document = {
        "modules": {
            "default": {"token": "x", "discovery": discovery, "mailboxes": {"max_age": "100s"}}
        }
    }
    config = build_config(document, {}).config
    target = Target("t", "https://whm.example", config.modules["default"], {}, Bound(8, 0.0))
    state = target.state
    state.new_epoch(0.0)
    assert state.listaccts is not None
    users = {u: Account(u, suspended=False) for u in ("alice", "bob")}
    state.start(state.listaccts, 0.0, urgent=False)
    state.answered(state.listaccts, users, 0.0)
    state.finish(state.listaccts, True)
    disk = {
        # Out of alphabetical order, the main mailbox (whatever WHM calls it) among them, an
        # address the filters leave out and one discovery did not name.
        "alice": (
            Mailbox("z@x", main=False, used=1, quota=None),
            Mailbox("main-account", main=True, used=2, quota=10),
            Mailbox("excluded@x", main=False, used=3, quota=None),
            Mailbox("a@x", main=False, used=4, quota=20),
            Mailbox("stray@x", main=False, used=5, quota=None),
        ),
        "bob": (Mailbox("b@x", main=False, used=6, quota=None),),
    }
    # bob's answer is older than max_age when the probe comes.
    answered = {"alice": 50.0, "bob": 0.0}
    for user in ("alice", "bob"):
        pops = state.pops[user]
        addresses = tuple(m.address for m in disk[user] if not m.main and m.address != "stray@x")
        state.start(pops, answered[user], urgent=False)
        state.answered(pops, Addresses(addresses, disk[user]), answered[user])
        state.finish(pops, True)
    found = snapshot(state, 120.0, 0.1, 10.0, pending=False, look=True)
    assert found.disk == [
        DiskSample("alice", "z@x", 1, None),
        DiskSample("alice", "alice", 2, 10),
        DiskSample("alice", "a@x", 4, 20),
    ]
