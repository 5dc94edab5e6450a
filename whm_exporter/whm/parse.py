"""Pure functions from WHM API 1 JSON to typed records.

Each takes the already-decoded body and returns records or raises :class:`WHMError`. WHM's quirks
live here and nowhere else: counters sent as strings, ``"result": "1"``, two shapes of the same
mailbox data, reasons that name a disabled server role.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from whm_exporter.whm.errors import WHMError

# Prometheus samples are float64: a counter above 2**53 cannot be exported exactly, and no real
# mailbox holds 9 PB, so such a value is a broken answer, not data.
_MAX_COUNTER = 2**53

# Cpanel/Exception/System/RequiredRoleDisabled.pm: 'This functionality is not available because
# the “MailReceive” role is disabled on this server.' (WHM-API-NOTES.md §4).
_ROLE_DISABLED = re.compile(r"\brole\b.*\bdisabled\b", re.IGNORECASE | re.DOTALL)
# The wording for a function an older server lacks is not documented (WHM-API-NOTES.md §5 [I]);
# match the common phrasings, and only when the reason names the function.
_UNKNOWN_FUNCTION = re.compile(
    r"unknown (?:app|function|api|command)|(?:function|app) .*not (?:found|exist)|not a valid"
    r" (?:function|app)|no such (?:function|app)|invalid (?:function|app)",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Folder:
    name: str
    messages: int
    vsize: int


@dataclass(frozen=True, slots=True)
class SenderCount:
    sender: str
    count: int


@dataclass(frozen=True, slots=True)
class UserTotal:
    user: str
    count: int


@dataclass(frozen=True, slots=True)
class Account:
    """One cPanel account from listaccts."""

    user: str
    suspended: bool


def counter(value: object, what: str) -> int:
    """A non-negative whole number, sent by WHM as an int or a digit string (legacy servers)."""
    if type(value) is int and 0 <= value <= _MAX_COUNTER:
        return value  # the common case, checked first: this runs for every folder
    if isinstance(value, bool):
        raise WHMError("protocol", f"{what} is a boolean, not a count")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.isascii() and value.strip().isdigit():
        number = int(value.strip())
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        raise WHMError("protocol", f"{what} is not a whole number: {_short(value)}")
    if not 0 <= number <= _MAX_COUNTER:
        raise WHMError("protocol", f"{what} is out of range: {number}")
    return number


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _field(item: object, key: str, what: str) -> object:
    if type(item) is dict and key in item:
        return item[key]
    if not isinstance(item, Mapping):
        raise WHMError("protocol", f"{what} is {type(item).__name__}, expected an object")
    if key not in item:
        raise WHMError("protocol", f"{what} has no {key!r}")
    return item[key]


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise WHMError("protocol", f"{what} is not a non-empty string: {_short(value)}")
    return value


def data(body: object, function: str) -> Any:
    """Check the {data, metadata} envelope and return ``data``.

    Success is ``metadata.result == 1`` after ``int()`` (old servers send ``"1"``); a failure
    keeps WHM's reason and is ``role_disabled`` when the reason names a disabled server role.
    """
    if not isinstance(body, Mapping):
        raise WHMError("protocol", f"answer is {type(body).__name__}, expected a JSON object")
    metadata = body.get("metadata")
    if not isinstance(metadata, Mapping) or "result" not in metadata:
        raise WHMError("protocol", "answer has no metadata.result")
    reason = str(metadata.get("reason") or "no reason given")
    try:
        result = int(metadata["result"])
    except (TypeError, ValueError):
        raise WHMError("protocol", f"metadata.result is {_short(metadata['result'])}") from None
    if result != 1:
        if _ROLE_DISABLED.search(reason):
            raise WHMError("role_disabled", reason)
        unknown = function in reason and bool(_UNKNOWN_FUNCTION.search(reason))
        raise WHMError("api", reason, unknown_function=unknown)
    return body.get("data")


def _records(body: object, function: str, key: str) -> list[Any]:
    payload = data(body, function)
    items = _field(payload, key, "data")
    if not isinstance(items, list):
        raise WHMError("protocol", f"data.{key} is {type(items).__name__}, expected a list")
    return items


def _folders(pairs: list[tuple[object, object]]) -> list[Folder]:
    folders: list[Folder] = []
    seen: set[str] = set()
    for name, item in pairs:
        folder = _text(name, "mailbox name")
        if folder in seen:
            # Two series with one label set would make the whole exposition invalid.
            raise WHMError("protocol", f"mailbox {folder!r} appears twice")
        seen.add(folder)
        folders.append(
            Folder(
                folder,
                counter(_field(item, "messages", folder), f"{folder}.messages"),
                counter(_field(item, "vsize", folder), f"{folder}.vsize"),
            )
        )
    return folders


def mailbox_status_list(body: object) -> list[Folder]:
    """get_mailbox_status_list: ``data.mailboxes[] {mailbox, messages, vsize, guid}``."""
    items = _records(body, "get_mailbox_status_list", "mailboxes")
    return _folders([(_field(item, "mailbox", "mailbox entry"), item) for item in items])


def mailbox_status(body: object) -> list[Folder]:
    """get_mailbox_status: ``data {FOLDER: {messages, vsize, guid}}``, the object form."""
    payload = data(body, "get_mailbox_status")
    if not isinstance(payload, Mapping):
        raise WHMError("protocol", f"data is {type(payload).__name__}, expected an object")
    return _folders(list(payload.items()))


def _named_counts(
    body: object, function: str, name_key: str, count_key: str
) -> list[tuple[str, int]]:
    """``data.payload[] {name_key, count_key}`` with each name once."""
    seen: dict[str, int] = {}
    for item in _records(body, function, "payload"):
        name = _text(_field(item, name_key, "payload entry"), name_key)
        count = counter(_field(item, count_key, name), f"{name} count")
        if name in seen:
            raise WHMError("protocol", f"{name_key} {name!r} appears twice")
        seen[name] = count
    return list(seen.items())


def sender_counts(body: object) -> list[SenderCount]:
    """get_unique_recipient_count_per_sender_for_user: ``data.payload[] {sender, count}``."""
    function = "get_unique_recipient_count_per_sender_for_user"
    return [
        SenderCount(sender, count)
        for sender, count in _named_counts(body, function, "sender", "unique_recipient_count")
    ]


def user_totals(body: object) -> list[UserTotal]:
    """get_unique_sender_recipient_count_per_user: ``data.payload[] {user, count}``."""
    function = "get_unique_sender_recipient_count_per_user"
    return [
        UserTotal(user, count)
        for user, count in _named_counts(body, function, "user", "unique_sender_recipient_count")
    ]


def accounts(body: object) -> list[Account]:
    """listaccts: ``data.acct[] {user, suspended, ...}``."""
    return [
        Account(
            _text(_field(item, "user", "acct entry"), "acct user"),
            bool(counter(item.get("suspended", 0), "acct suspended")),
        )
        for item in _records(body, "listaccts", "acct")
    ]


def pops(body: object) -> list[str]:
    """list_pops_for: ``data.pops[]``, the user's email addresses (not its main account)."""
    return [_text(p, "pop") for p in _records(body, "list_pops_for", "pops")]
