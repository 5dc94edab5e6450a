"""Pure functions from WHM API 1 JSON to typed records.

Each takes the already-decoded body and returns records or raises :class:`WHMError`, and only
that: whatever else a hostile answer provokes is a ``protocol`` error for that one call. WHM's
quirks live here and nowhere else: counters sent as strings, ``"result": "1"``, two shapes of the
same mailbox data, reasons that name a disabled server role.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, ParamSpec, TypeVar

from whm_exporter.whm.errors import WHMError

R = TypeVar("R")
P = ParamSpec("P")

# Prometheus samples are float64: a counter above 2**53 cannot be exported exactly, and no real
# mailbox holds 9 PB, so such a value is a broken answer, not data.
_MAX_COUNTER = 2**53
# A digit string longer than this is out of range before int() reads it (int() itself refuses
# strings of over 4,300 digits, with an error of its own).
_MAX_DIGITS = len(str(_MAX_COUNTER))

# cPanel's Cpanel/Exception/System/RequiredRoleDisabled.pm: 'This functionality is not available
# because the “MailReceive” role is disabled on this server.'
_ROLE_DISABLED = re.compile(r"\brole\b.*\bdisabled\b", re.IGNORECASE | re.DOTALL)
# The WHM API 1 reference does not document the answer for a function a server lacks. Two sources
# word it: WHM's "Guide to API Authentication - API Tokens in WHM" names "Function not found"
# errors, and cPanel's own dispatcher (Whostmgr/XMLUI/Meta.pm, find_api; the API 1 one is not
# public) answers "Unknown app (NAME) requested for this version (N) of the API.". The client
# also takes an HTTP 404 for it.
_FUNCTION_NOT_FOUND = "function not found"
_UNKNOWN_APP = "unknown app"


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


# An account's own cap (listaccts max_email_per_hour, max_defer_fail_percentage): a positive
# number, "unlimited" (no cap even where the server has one), or None: the server's setting
# applies (cPanel's Whostmgr/Accounts/List.pm sends 0, "0", "default", "", "*unknown*" or no key).
Cap = int | Literal["unlimited"] | None
UNLIMITED: Literal["unlimited"] = "unlimited"


@dataclass(frozen=True, slots=True)
class Account:
    """One cPanel account from listaccts, with what cPanel already did to its outgoing mail and
    its own sending caps."""

    user: str
    suspended: bool
    outgoing_held: bool = False
    outgoing_suspended: bool = False
    max_emails_per_hour: Cap = None
    max_defer_fail_percentage: Cap = None
    # The server's min_defer_fail_to_trigger_protection, repeated on every account (None: not
    # a number).
    min_defer_fail: int | None = None
    # Its main domain ("" when listaccts gave none): a mail domain even without an address.
    domain: str = ""


# A limit marker's numbers (emailtrack_user_stats REACHED_*): messages sent, or deferrals and
# failures, this clock hour, and the cap or the minimum that triggers protection.
Marker = tuple[int, int]


@dataclass(frozen=True, slots=True)
class MailFlow:
    """One cPanel user's mail in a window, from emailtrack_user_stats."""

    user: str
    sent: int
    delivered: int
    deferrals: int
    failures: int
    defer_failures: int
    sent_bytes: int
    reached_max_emails: bool
    reached_max_defer_fail: bool
    # The numbers of cPanel's marker text, when REACHED_* carried one ("150/150", "7/5 (58%)").
    max_emails_marker: Marker | None = None
    defer_fail_marker: Marker | None = None


@dataclass(frozen=True, slots=True)
class MailFlowAnswer:
    """The records that parsed, and what was wrong with the rest of the answer."""

    records: tuple[MailFlow, ...]
    # One text per record refused (no USER, a bad number), for the log.
    bad_records: tuple[str, ...]
    # metadata.overflowed: WHM cut the record list short.
    overflowed: bool
    # (user, text) of each REACHED_* text that is neither 0, 1 nor a marker: taken as reached.
    odd_markers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class TweakSetting:
    """get_tweaksetting: a key and its value as WHM sent it (None: unset, no ``value``)."""

    key: str
    value: str | None


@dataclass(frozen=True, slots=True)
class Mailbox:
    """One address from Email::list_pops_with_disk, with its disk use and quota (None when
    unlimited)."""

    address: str
    main: bool
    used: int
    quota: int | None


def _contained(parser: Callable[P, R]) -> Callable[P, R]:
    """A parser whose every failure is a WHMError: one hostile answer costs its own call, never
    the calls beside it, whatever it makes the parser trip over."""

    @functools.wraps(parser)
    def contained(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return parser(*args, **kwargs)
        except WHMError:
            raise
        except Exception as err:
            raise WHMError("protocol", f"unreadable answer ({type(err).__name__})") from None

    return contained


def counter(value: object, what: str) -> int:
    """A finite, non-negative whole number, sent by WHM as an int or a digit string (legacy
    servers)."""
    if type(value) is int:  # the common case, checked first: this runs for every folder
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        if len(value.lstrip("0")) > _MAX_DIGITS:
            raise WHMError("protocol", f"{what} is out of range: {_short(value)}")
        number = int(value)
    elif isinstance(value, float) and value.is_integer():  # neither NaN nor infinite
        number = int(value)
    else:
        raise WHMError("protocol", f"{what} is not a whole number: {_short(value)}")
    if not 0 <= number <= _MAX_COUNTER:
        raise WHMError("protocol", f"{what} is out of range: {_short(value)}")
    return number


def _short(value: object) -> str:
    """A value for an error message: at most 60 characters, and never the contents of an array
    or object, which may nest thousands deep."""
    if isinstance(value, dict | list):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'}"
    return repr(value)[:60]


def _field(item: object, key: str, what: str) -> object:
    # JSON objects decode to dict: isinstance(dict) is the cheap check, and this runs three
    # times per folder.
    if not isinstance(item, dict):
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

    ``metadata.result`` is read as a counter (old servers send ``"1"``): 1 is success, 0 is WHM's
    failure, which keeps WHM's reason and is ``role_disabled`` when the reason names a disabled
    server role; anything else (``1.9``, ``true``, ``Infinity``) is a broken answer.
    """
    if not isinstance(body, Mapping):
        raise WHMError("protocol", f"answer is {type(body).__name__}, expected a JSON object")
    metadata = body.get("metadata")
    if not isinstance(metadata, Mapping) or "result" not in metadata:
        raise WHMError("protocol", "answer has no metadata.result")
    result = counter(metadata["result"], "metadata.result")
    if result == 1:
        return body.get("data")
    if result != 0:
        raise WHMError("protocol", f"metadata.result is {result}, expected 1 or 0")
    reason = metadata.get("reason")
    if not isinstance(reason, str) or not reason:
        reason = "no reason given"
    if _ROLE_DISABLED.search(reason):
        raise WHMError("role_disabled", reason)
    lowered = reason.lower()
    unknown = _FUNCTION_NOT_FOUND in lowered or (_UNKNOWN_APP in lowered and function in reason)
    raise WHMError("api", reason, unknown_function=unknown)


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


@_contained
def mailbox_status_list(body: object) -> list[Folder]:
    """get_mailbox_status_list: ``data.mailboxes[] {mailbox, messages, vsize, guid}``."""
    items = _records(body, "get_mailbox_status_list", "mailboxes")
    return _folders([(_field(item, "mailbox", "mailbox entry"), item) for item in items])


@_contained
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


@_contained
def sender_counts(body: object) -> list[SenderCount]:
    """get_unique_recipient_count_per_sender_for_user: ``data.payload[] {sender, count}``."""
    function = "get_unique_recipient_count_per_sender_for_user"
    return [
        SenderCount(sender, count)
        for sender, count in _named_counts(body, function, "sender", "unique_recipient_count")
    ]


@_contained
def user_totals(body: object) -> list[UserTotal]:
    """get_unique_sender_recipient_count_per_user: ``data.payload[] {user, count}``."""
    function = "get_unique_sender_recipient_count_per_user"
    return [
        UserTotal(user, count)
        for user, count in _named_counts(body, function, "user", "unique_sender_recipient_count")
    ]


def _flag(item: Mapping[str, object], key: str) -> bool:
    return bool(counter(item.get(key, 0), key))


def cap(value: object) -> Cap:
    """An account's cap as cPanel enforces it (Whostmgr/Accounts/List.pm): a positive number
    (JSON number or digit string) is its own, ``"unlimited"`` none at all; 0, ``"0"``,
    ``"default"``, ``""``, ``"*unknown*"`` or no key leave the server's setting in force. So does
    a form no server sends: the account is not refused for a cap."""
    if isinstance(value, str) and value.strip().lower() == UNLIMITED:
        return UNLIMITED
    try:
        number = counter(value, "cap")
    except WHMError:
        return None
    return number or None


def _optional_count(value: object) -> int | None:
    try:
        return counter(value, "count")
    except WHMError:
        return None


def _domain(value: object) -> str:
    # A domain name, lower-cased as DNS compares them; anything else is no domain.
    return value.lower() if isinstance(value, str) and "." in value else ""


@_contained
def accounts(body: object) -> list[Account]:
    """listaccts: ``data.acct[] {user, domain, suspended, outgoing_mail_hold,
    outgoing_mail_suspended, max_email_per_hour, max_defer_fail_percentage,
    min_defer_fail_to_trigger_protection}``
    (each flag 0 or 1, as the listaccts reference gives them; the caps as :func:`cap` reads
    them)."""
    out = []
    for item in _records(body, "listaccts", "acct"):
        user = _text(_field(item, "user", "acct entry"), "acct user")
        out.append(
            Account(
                user,
                _flag(item, "suspended"),
                _flag(item, "outgoing_mail_hold"),
                _flag(item, "outgoing_mail_suspended"),
                cap(item.get("max_email_per_hour")),
                cap(item.get("max_defer_fail_percentage")),
                _optional_count(item.get("min_defer_fail_to_trigger_protection")),
                _domain(item.get("domain")),
            )
        )
    return out


@_contained
def pops(body: object) -> list[str]:
    """list_pops_for: ``data.pops[]``, the user's email addresses (not its main account)."""
    return [_text(p, "pop") for p in _records(body, "list_pops_for", "pops")]


# emailtrack_user_stats record fields (WHM API 1 "Return all cPanel accounts email tracking
# statistics"), in the order of MailFlow's counters.
_FLOW_COUNTERS = (
    "SENDCOUNT",
    "SUCCESSCOUNT",
    "DEFERCOUNT",
    "FAILCOUNT",
    "DEFERFAILCOUNT",
    "TOTALSIZE",
)


# cPanel's marker file text (Cpanel/DeliveryReporter.pm reads /var/cpanel/email_send_limits/
# max_emails_<domain> and max_deferfail_<domain>): "150/150", or "7/5 (58%)" with the share.
_MARKER = re.compile(
    r"\s*(\d{1,15})\s*/\s*(\d{1,15})\s*(?:\(\s*\d{1,3}(?:\.\d+)?\s*%\s*\))?\s*", re.ASCII
)


def limit_marker(value: object, what: str) -> tuple[bool, Marker | None, bool]:
    """A REACHED_* value: whether the limit is reached, the marker's numbers when it carries
    them, and whether it was a text of no known form (reached all the same). The reference's 0
    and 1 (as numbers or strings) and an empty text carry no numbers; a record is never refused
    for this field."""
    if value is None or value == "":
        return False, None, False
    if isinstance(value, str) and (found := _MARKER.fullmatch(value)):
        return True, (int(found[1]), int(found[2])), False
    try:
        return bool(counter(value, what)), None, False
    except WHMError:
        return True, None, True


@_contained
def mail_flow(body: object) -> MailFlowAnswer:
    """emailtrack_user_stats: ``data.records[]``, one per cPanel user with mail in the window.

    A record without ``USER`` or with a bad number is refused alone (named in ``bad_records``);
    ``metadata.overflowed`` says WHM cut the list short. ``REACHED_MAXEMAILS`` and
    ``REACHED_MAXDEFERFAIL`` are read by :func:`limit_marker`.
    """
    items = _records(body, "emailtrack_user_stats", "records")
    metadata = body.get("metadata") if isinstance(body, Mapping) else None
    overflowed = isinstance(metadata, Mapping) and metadata.get("overflowed") not in (None, 0, "0")
    records: dict[str, MailFlow] = {}
    bad: list[str] = []
    odd: list[tuple[str, str]] = []
    for n, item in enumerate(items):
        try:
            user = _text(_field(item, "USER", f"record {n}"), f"record {n} USER")
            sent, delivered, deferrals, failures, defer_failures, size = (
                counter(_field(item, key, user), f"{user}.{key}") for key in _FLOW_COUNTERS
            )
            if user in records:
                raise WHMError("protocol", f"USER {user!r} appears twice")
            markers = []
            for key in ("REACHED_MAXEMAILS", "REACHED_MAXDEFERFAIL"):
                reached, numbers, unknown = limit_marker(item.get(key), f"{user}.{key}")
                if unknown:
                    odd.append((user, _short(item.get(key))))
                markers.append((reached, numbers))
            (emails, emails_at), (defer_fail, defer_fail_at) = markers
            records[user] = MailFlow(
                user,
                sent,
                delivered,
                deferrals,
                failures,
                defer_failures,
                size,
                emails,
                defer_fail,
                emails_at,
                defer_fail_at,
            )
        except WHMError as err:
            bad.append(err.detail)
    return MailFlowAnswer(tuple(records.values()), tuple(bad), overflowed, tuple(odd))


@_contained
def tweak_setting(body: object) -> TweakSetting:
    """get_tweaksetting: ``data.tweaksetting {key, value}``; an unset key has no ``value``
    member (not null). Values arrive as strings; a number is taken as its text."""
    payload = data(body, "get_tweaksetting")
    setting = _field(payload, "tweaksetting", "data")
    key = _text(_field(setting, "key", "data.tweaksetting"), "data.tweaksetting.key")
    assert isinstance(setting, dict)  # _field checked it
    if "value" not in setting:
        return TweakSetting(key, None)
    value = setting["value"]
    if type(value) is int:
        value = str(value)
    if not isinstance(value, str):
        raise WHMError("protocol", f"{key}: value is not a string: {_short(value)}")
    return TweakSetting(key, value)


def uapi(body: object, function: str) -> Any:
    """uapi_cpanel: the WHM envelope around a UAPI result, ``data.uapi {status, errors, data}``.

    WHM reports success for the passthrough itself; the UAPI function's own failure is in
    ``data.uapi.status`` and ``errors`` (uapi_cpanel reference), a disabled role among them.
    """
    payload = data(body, "uapi_cpanel")
    result = _field(payload, "uapi", "data")
    if not isinstance(result, Mapping):
        raise WHMError("protocol", f"data.uapi is {type(result).__name__}, expected an object")
    if counter(_field(result, "status", "data.uapi"), "data.uapi.status") != 1:
        errors = result.get("errors")
        reason = "; ".join(map(str, errors)) if isinstance(errors, list) and errors else "failed"
        if _ROLE_DISABLED.search(reason):
            raise WHMError("role_disabled", reason)
        raise WHMError("api", f"{function}: {reason}")
    return result.get("data")


@_contained
def pops_with_disk(body: object) -> list[Mailbox]:
    """uapi_cpanel Email::list_pops_with_disk: each address with ``_diskused`` and
    ``_diskquota`` in bytes (``0``: unlimited). The main account, when listed, has no ``@``."""
    items = uapi(body, "list_pops_with_disk")
    if not isinstance(items, list):
        raise WHMError("protocol", f"data.uapi.data is {type(items).__name__}, expected a list")
    out = []
    for item in items:
        address = _text(_field(item, "email", "list_pops_with_disk entry"), "email")
        main = "@" not in address
        used = counter(_field(item, "_diskused", address), f"{address}._diskused")
        quota = counter(_field(item, "_diskquota", address), f"{address}._diskquota")
        out.append(Mailbox(address, main, used, quota or None))
    return out


# With cPHulk off, its get_* functions answer result 0 with this reason (cPanel's
# Cpanel/Hulk/Admin.pm): a state of the server, not a failed call.
_CPHULK_OFF = "cphulk is disabled"


@dataclass(frozen=True, slots=True)
class LoginFailure:
    """One row of get_cphulk_failed_logins or get_cphulk_user_brutes: a failed login (the
    address it came from is not kept: a label of it would be unbounded, and personal data)."""

    user: str
    service: str


@dataclass(frozen=True, slots=True)
class CphulkRows(Generic[R]):
    """The rows of a cPHulk list that parsed, and one text per row refused."""

    rows: tuple[R, ...]
    bad_records: tuple[str, ...]


@_contained
def cphulk_status(body: object) -> bool:
    """cphulk_status: ``data.is_enabled``, 0 or 1 (or their strings)."""
    payload = data(body, "cphulk_status")
    enabled = counter(_field(payload, "is_enabled", "data"), "data.is_enabled")
    if enabled > 1:
        raise WHMError("protocol", f"data.is_enabled is {enabled}, expected 0 or 1")
    return enabled == 1


def _cphulk_time(item: Mapping[str, object], key: str, what: str) -> None:
    """Raises unless ``key`` holds a time: server-local ``YYYY-MM-DD HH:MM:SS`` as real servers
    send, or ISO 8601 as the reference's examples show. Only checked: the rows are counted, and
    cPHulk lists only rows not yet expired."""
    text = item.get(key)
    try:
        # Python 3.11's fromisoformat reads both forms (a space or a T, a Z suffix).
        datetime.fromisoformat(text if isinstance(text, str) else "")
    except ValueError:
        raise WHMError("protocol", f"{what}: {key} is not a time: {_short(text)}") from None


def _cphulk_rows(
    body: object, function: str, key: str, read: Callable[[Mapping[str, object], str], R]
) -> CphulkRows[R]:
    """``data.<key>[]``, each row read by ``read``; a row refused costs only itself. cPHulk off
    is no rows."""
    try:
        items = _records(body, function, key)
    except WHMError as err:
        if err.reason == "api" and _CPHULK_OFF in err.detail.lower():
            return CphulkRows((), ())
        raise
    rows: list[R] = []
    bad: list[str] = []
    for n, item in enumerate(items):
        what = f"{key} row {n}"
        try:
            if not isinstance(item, dict):
                raise WHMError("protocol", f"{what} is {type(item).__name__}, expected an object")
            _cphulk_time(item, "logintime", what)
            _cphulk_time(item, "exptime", what)
            rows.append(read(item, what))
        except WHMError as err:
            bad.append(err.detail)
    return CphulkRows(tuple(rows), tuple(bad))


def _login_failure(item: Mapping[str, object], what: str) -> LoginFailure:
    user = _text(_field(item, "user", what), f"{what} user")
    return LoginFailure(user, _text(_field(item, "service", what), f"{what} service"))


def _blocked_address(item: Mapping[str, object], what: str) -> None:
    # Checked, never kept (see LoginFailure).
    _text(_field(item, "ip", what), f"{what} ip")


@_contained
def cphulk_failures(body: object, function: str) -> CphulkRows[LoginFailure]:
    """get_cphulk_failed_logins (``data.failed_logins[]``) or get_cphulk_user_brutes
    (``data.user_brutes[]``): ``{user, ip, service, authservice, logintime, exptime}``, one
    row per failure; real servers add ``country_code`` and ``country_name``."""
    key = {"get_cphulk_failed_logins": "failed_logins", "get_cphulk_user_brutes": "user_brutes"}
    return _cphulk_rows(body, function, key[function], _login_failure)


@_contained
def cphulk_blocks(body: object, function: str) -> CphulkRows[None]:
    """get_cphulk_brutes (``data.brutes[]``) or get_cphulk_excessive_brutes
    (``data.excessive_brutes[]``): ``{ip, notes, logintime, exptime, timeleft}``, one row per
    address blocked."""
    key = {"get_cphulk_brutes": "brutes", "get_cphulk_excessive_brutes": "excessive_brutes"}
    return _cphulk_rows(body, function, key[function], _blocked_address)


# validate_current_dkims names the record it checks, not the domain (its reference: "domain":
# "default._domainkey.example.com").
_DKIM_RECORD = "default._domainkey."


@dataclass(frozen=True, slots=True)
class DomainChecks:
    """One validate_current_* answer: (domain, state) per item in the order sent, and one text
    per item refused."""

    states: tuple[tuple[str, str], ...]
    bad_records: tuple[str, ...]


@_contained
def domain_checks(body: object, function: str) -> DomainChecks:
    """validate_current_spfs, validate_current_dkims, validate_current_ptrs: ``data.payload[]
    {domain, state, ...}``, one item per domain checked (DKIM's ``domain`` is the record,
    ``default._domainkey.<domain>``). ``state`` is ``VALID`` or why not: SPF ``MISSING``,
    ``MULTIPLE``, ``ERROR``, on real servers ``INVALID`` (the documented ``MISMATCHED`` is never
    sent); DKIM ``MALFORMED``, ``MISMATCH``, ``MISSING``, ``MULTIPLE``, ``NOPUB``, ``ERROR``;
    PTR ``MISSING_PTR``, ``PTR_MISMATCH``, ``IP_IS_PRIVATE``, ``ERROR``, on real servers
    ``HELO_MISMATCH``. Any text is taken as sent. An item that is not an object, or lacks its
    domain or state, is refused alone (named in ``bad_records``). Domains lower-cased, as DNS
    compares them."""
    items = _records(body, function, "payload")
    states: list[tuple[str, str]] = []
    bad: list[str] = []
    for n, item in enumerate(items):
        what = f"payload item {n}"
        try:
            domain = _text(_field(item, "domain", what), f"{what} domain").lower()
            if function == "validate_current_dkims":
                domain = domain.removeprefix(_DKIM_RECORD)
            states.append((domain, _text(_field(item, "state", domain), f"{domain} state")))
        except WHMError as err:
            bad.append(err.detail)
    return DomainChecks(tuple(states), tuple(bad))
