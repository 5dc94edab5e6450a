"""Discovery: listaccts (the users, what cPanel already did to their outgoing mail, and their own
sending caps, which the server settings family serves), then one call per user for its
addresses, list_pops_for, or list_pops_with_disk (through uapi_cpanel) with each address's disk
use and quota. The inventory every other per-user item hangs from; its
answers are served for ever. Config section ``discovery``."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from whm_exporter.collect.state import Addresses, Item, Kind, TargetState
from whm_exporter.config import ModuleConfig
from whm_exporter.families.base import Call, Family, Fields, Served
from whm_exporter.series import Family as MetricFamily
from whm_exporter.snapshot import DiskSample, Snapshot, UserFlags
from whm_exporter.whm import parse

# A kept listaccts answer: the users kept (Account's fields), and the other users it named
# (suspended or filtered out).
ACCOUNTS: Fields[parse.Account] = Fields(parse.Account)
# A kept address list: the addresses, and with list_pops_with_disk each Mailbox's fields.
DISK: Fields[parse.Mailbox] = Fields(parse.Mailbox)


class Discovery(Family):
    section = "discovery"
    kinds = (Kind.LISTACCTS, Kind.POPS)
    exposition_rank = 4
    first_rank = 0

    def max_age(self, module: ModuleConfig, kind: Kind) -> float:
        return math.inf

    def plan(self, item: Item[Any], state: TargetState, wall: float) -> Call:
        if item.kind is Kind.LISTACCTS:
            # The accounts' own sending caps too: the server settings family serves them.
            want = (
                "user,domain,suspended,outgoing_mail_hold,outgoing_mail_suspended,max_email_per_hour,"
                "max_defer_fail_percentage,min_defer_fail_to_trigger_protection"
            )
            return Call("listaccts", "", {"want": want}, lambda b, now: _listed(state, b, now))
        if state.module.discovery.function == "list_pops_with_disk":
            return Call(
                "list_pops_with_disk",
                item.user,
                {
                    "cpanel.user": item.user,
                    "cpanel.module": "Email",
                    "cpanel.function": "list_pops_with_disk",
                },
                lambda b, now: _with_disk(state, item, b, now),
                whm_function="uapi_cpanel",
            )
        return Call(
            "list_pops_for",
            item.user,
            {"user": item.user},
            lambda b, now: state.answered(item, Addresses(tuple(sorted(parse.pops(b)))), now),
        )

    def items(self, state: TargetState) -> Iterator[Item[Any]]:
        if state.listaccts is not None:
            yield state.listaccts
        yield from state.pops.values()

    def find(self, state: TargetState, kind: Kind, user: str, subject: str) -> Item[Any] | None:
        return state.listaccts if kind is Kind.LISTACCTS else state.pops.get(user)

    def captured(self, item: Item[Any], state: TargetState) -> Any:
        if item.kind is Kind.LISTACCTS and item.answer is not None:
            # Who else it named tells a user new to the server from one it filtered out.
            return item.answer, state.listed
        return item.answer

    def wire_type(self, kind: Kind) -> Any:
        if kind is Kind.LISTACCTS:
            return tuple[list[ACCOUNTS.wire], list[str]]  # type: ignore[name-defined]
        return tuple[list[str], list[DISK.wire]]  # type: ignore[name-defined]

    def dump(self, kind: Kind, answer: Any) -> Any:
        if kind is Kind.LISTACCTS:
            kept, listed = answer
            return [ACCOUNTS.out(a) for a in kept.values()], sorted(listed - kept.keys())
        return answer.addresses, [DISK.out(m) for m in answer.disk]

    def load(self, kind: Kind, value: Any, user: str, subject: str) -> Any:
        if kind is Kind.LISTACCTS:
            kept, others = value
            # The users the filters or skip_suspended left out: as suspended users, which the
            # same filters leave out again (a user they would keep cannot have been left out).
            return {
                **{r[0]: ACCOUNTS.into(r) for r in kept},
                **{u: parse.Account(u, True) for u in others},
            }
        addresses, disk = value
        return Addresses(tuple(addresses), tuple(DISK.into(m) for m in disk))

    def replay_rank(self, kind: Kind) -> int:
        # The users first, then their addresses: the inventory the other answers hang from.
        return 0 if kind is Kind.LISTACCTS else 1

    def serve(self, state: TargetState, served: Served) -> Mapping[str, Any]:
        if state.listaccts is None:
            return {"discovery_complete": True, "user_flags": [], "disk": []}
        listed: dict[str, parse.Account] = next(
            iter(served.take([state.listaccts], Kind.LISTACCTS.value, math.inf)), {}
        )
        pops = served.take(state.pops.values(), state.module.discovery.function, math.inf)
        users = state.accounts
        return {
            "discovery_complete": state.listaccts.answer is not None
            and len(pops) == len(state.pops),
            "user_flags": [
                UserFlags(u, a.outgoing_held, a.outgoing_suspended)
                for u, a in sorted(listed.items())
                if u in users
            ],
            "disk": _disk(state, served.now),
        }

    def render(self, s: Snapshot) -> list[MetricFamily]:
        return [
            MetricFamily(
                "whm_user_outgoing_mail_held",
                "1 when cPanel holds the user's outgoing mail in the queue (listaccts).",
                ("user",),
                [((f.user,), int(f.held)) for f in s.user_flags],
            ),
            MetricFamily(
                "whm_user_outgoing_mail_suspended",
                "1 when cPanel suspends the user's outgoing mail (listaccts).",
                ("user",),
                [((f.user,), int(f.suspended)) for f in s.user_flags],
            ),
            MetricFamily(
                "whm_account_disk_used_bytes",
                "Disk space the email account uses (list_pops_with_disk), in bytes.",
                ("user", "account"),
                [((d.user, d.account), d.used) for d in s.disk],
            ),
            MetricFamily(
                "whm_account_quota_bytes",
                "The email account's disk quota, in bytes; absent when unlimited.",
                ("user", "account"),
                [((d.user, d.account), d.quota) for d in s.disk if d.quota is not None],
            ),
        ]


def _listed(state: TargetState, body: object, now: float) -> None:
    users = {a.user: a for a in parse.accounts(body)}
    assert state.listaccts is not None
    state.answered(state.listaccts, users, now)


def _with_disk(state: TargetState, item: Item[Any], body: object, now: float) -> None:
    mailboxes = parse.pops_with_disk(body)
    addresses = tuple(sorted(m.address for m in mailboxes if not m.main))
    state.answered(item, Addresses(addresses, tuple(mailboxes)), now)


def _disk(state: TargetState, now: float) -> list[DiskSample]:
    """Disk use of each account kept (the main mailbox under its user's name), from the
    discovery answers within ``mailboxes.max_age``, in WHM's order."""
    max_age = state.module.mailboxes.max_age
    samples: list[DiskSample] = []
    for user, item in state.pops.items():
        if item.answer is None or now - item.answered_at > max_age:
            continue
        # A set, not the tuple: a user may have thousands of addresses.
        kept = set(state.accounts[user])
        for mailbox in item.answer.disk:
            account = user if mailbox.main else mailbox.address
            if account in kept:
                samples.append(DiskSample(user, account, mailbox.used, mailbox.quota))
    return samples


FAMILY = Discovery()
