"""The parsers against the official WHM examples and against every wrong shape we can name."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import fixture

from whm_exporter.whm import parse
from whm_exporter.whm.errors import WHMError

PARSERS = [
    parse.mailbox_status_list,
    parse.mailbox_status,
    parse.sender_counts,
    parse.user_totals,
    parse.accounts,
    parse.pops,
    parse.mail_flow,
    parse.pops_with_disk,
]
FUNCTIONS = [
    "get_mailbox_status_list",
    "get_mailbox_status",
    "get_unique_recipient_count_per_sender_for_user",
    "get_unique_sender_recipient_count_per_user",
    "listaccts",
    "list_pops_for",
    "emailtrack_user_stats",
    "uapi_cpanel",
]
OFFICIAL_FOLDERS = {
    "INBOX": (42000, 42),
    "INBOX.Drafts": (5, 522),
    "INBOX.Sent": (1, 56),
    "INBOX.Trash": (2001, 5643),
    "INBOX.angel_face@example_com": (3, 1524),
    "INBOX.marla_singer@example_com": (5, 100),
    "INBOX.narrator@example_com": (0, 0),
    "INBOX.robert_paulsen@example_com": (2, 2222),
    "INBOX.tyler_durden@example_com": (55, 12244),
}


def ok(function: str, data: Any) -> dict[str, Any]:
    return {
        "data": data,
        "metadata": {"command": function, "reason": "OK", "result": 1, "version": 1},
    }


def test_official_get_mailbox_status_example_gives_every_folder() -> None:
    folders = parse.mailbox_status(fixture("get_mailbox_status.official.json"))
    assert {f.name: (f.messages, f.vsize) for f in folders} == OFFICIAL_FOLDERS


def test_official_items_in_list_shape_give_the_same_folders() -> None:
    folders = parse.mailbox_status_list(fixture("get_mailbox_status_list.official_items.json"))
    assert {f.name: (f.messages, f.vsize) for f in folders} == OFFICIAL_FOLDERS


def test_string_counters_are_coerced_legacy_doc_example() -> None:
    folders = parse.mailbox_status(fixture("get_mailbox_status.legacy_string_counters.json"))
    assert {(f.name, f.messages, f.vsize) for f in folders} == {
        ("INBOX.marla_singer@example_com", 0, 0),
        ("INBOX.angel_face@example_com", 0, 0),
    }


def test_official_unique_recipient_example() -> None:
    body = fixture("get_unique_recipient_count_per_sender_for_user.official.json")
    assert parse.sender_counts(body) == [parse.SenderCount("username@example.com", 51)]


def test_no_remote_mail_is_an_empty_payload() -> None:
    body = fixture("get_unique_recipient_count_per_sender_for_user.empty.json")
    assert parse.sender_counts(body) == []


def test_string_result_one_is_success_as_in_the_2018_list_pops_for_example() -> None:
    pops = parse.pops(fixture("list_pops_for.legacy_string_result.json"))
    assert pops == ["example1@example.com", "example3@example.com", "example2@example.com"]


def test_listaccts_official_fields() -> None:
    # The reference's example of max_email_per_hour is "unlimited": no cap, whatever the server's.
    assert parse.accounts(fixture("listaccts.official_fields.json")) == [
        parse.Account(
            "username", suspended=False, max_emails_per_hour="unlimited", domain="example.com"
        )
    ]


def test_user_totals() -> None:
    body = ok(
        "get_unique_sender_recipient_count_per_user",
        {"payload": [{"user": "bob", "unique_sender_recipient_count": "12"}]},
    )
    assert parse.user_totals(body) == [parse.UserTotal("bob", 12)]


def test_role_disabled_reason_is_its_own_class() -> None:
    with pytest.raises(WHMError) as err:
        parse.mailbox_status_list(fixture("get_mailbox_status_list.role_disabled.json"))
    assert err.value.reason == "role_disabled"
    assert "MailReceive" in err.value.detail


@pytest.mark.parametrize(
    "name",
    [
        "get_mailbox_status_list.missing_account.json",
        "get_unique_recipient_count_per_sender_for_user.end_time_in_future.json",
        "list_pops_for.no_such_user.json",
    ],
)
def test_result_zero_is_an_api_error_keeping_whms_reason(name: str) -> None:
    body = fixture(name)
    with pytest.raises(WHMError) as err:
        parse.data(body, body["metadata"]["command"])
    assert err.value.reason == "api"
    assert err.value.detail == body["metadata"]["reason"]
    assert not err.value.unknown_function


def test_official_list_pops_for_example() -> None:
    assert parse.pops(fixture("list_pops_for.official.json")) == [
        "example1@example.com",
        "example3@example.com",
        "example2@example.com",
    ]


def failure(function: str, reason: str) -> dict[str, Any]:
    """The documented failure envelope: ``result`` 0 and the reason (WHM API 1 introduction)."""
    return {"metadata": {"command": function, "reason": reason, "result": 0, "version": 1}}


def test_unknown_app_is_recognised_only_when_the_reason_names_the_function() -> None:
    body = fixture("get_mailbox_status_list.unknown_function.json")
    with pytest.raises(WHMError) as err:
        parse.mailbox_status_list(body)
    assert (err.value.reason, err.value.unknown_function) == ("api", True)
    other = failure(
        "get_mailbox_status_list",
        "Unknown app (something_else) requested for this version (1) of the API.",
    )
    with pytest.raises(WHMError) as err:
        parse.mailbox_status_list(other)
    assert not err.value.unknown_function


@pytest.mark.parametrize(("parser", "function"), list(zip(PARSERS, FUNCTIONS, strict=True)))
def test_each_parser_knows_its_own_function_as_unknown(parser: Any, function: str) -> None:
    reason = f"Unknown app ({function}) requested for this version (1) of the API."
    with pytest.raises(WHMError) as err:
        parser(failure(function, reason))
    assert (err.value.reason, err.value.unknown_function) == ("api", True)


def test_function_not_found_is_an_unknown_function() -> None:
    # The wording of WHM's "Guide to API Authentication - API Tokens in WHM".
    with pytest.raises(WHMError) as err:
        parse.mailbox_status_list(failure("get_mailbox_status_list", "Function not found"))
    assert err.value.unknown_function


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ([], "list for object"),
        ({"data": {}}, "no metadata"),
        ({"metadata": {"result": "yes"}}, "non-numeric result"),
        (ok("get_mailbox_status_list", None), "missing data"),
        (ok("get_mailbox_status_list", {"mailboxes": {}}), "object for list"),
        (ok("get_mailbox_status_list", {"mailboxes": [["INBOX"]]}), "list for item"),
        (
            ok("get_mailbox_status_list", {"mailboxes": [{"mailbox": "INBOX", "vsize": 1}]}),
            "no messages",
        ),
        (
            ok(
                "get_mailbox_status_list",
                {"mailboxes": [{"mailbox": 3, "messages": 1, "vsize": 1}]},
            ),
            "name",
        ),
        (
            ok(
                "get_mailbox_status_list",
                {"mailboxes": [{"mailbox": "", "messages": 1, "vsize": 1}]},
            ),
            "empty",
        ),
    ],
)
def test_wrong_shapes_are_protocol_errors(body: Any, why: str) -> None:
    with pytest.raises(WHMError) as err:
        parse.mailbox_status_list(body)
    assert err.value.reason == "protocol", why


@pytest.mark.parametrize(
    "bad",
    [1.5, -1, 2**60, "12abc", "", None, True, [], "١٢", float("nan"), float("inf"), " 5", 1e300],
)
def test_bad_counters_are_protocol_errors(bad: object) -> None:
    body = ok("get_mailbox_status", {"INBOX": {"messages": bad, "vsize": 1}})
    with pytest.raises(WHMError) as err:
        parse.mailbox_status(body)
    assert err.value.reason == "protocol"


def test_integral_float_counter_is_accepted() -> None:
    body = ok("get_mailbox_status", {"INBOX": {"messages": 3.0, "vsize": "7"}})
    assert parse.mailbox_status(body) == [parse.Folder("INBOX", 3, 7)]


def test_duplicate_folder_is_a_protocol_error_not_a_duplicate_series() -> None:
    item = {"mailbox": "INBOX", "messages": 1, "vsize": 1}
    with pytest.raises(WHMError) as err:
        parse.mailbox_status_list(ok("get_mailbox_status_list", {"mailboxes": [item, item]}))
    assert "twice" in err.value.detail


def test_duplicate_sender_is_a_protocol_error() -> None:
    row = {"sender": "a@b.c", "unique_recipient_count": 1}
    body = ok("get_unique_recipient_count_per_sender_for_user", {"payload": [row, row]})
    with pytest.raises(WHMError):
        parse.sender_counts(body)


@pytest.mark.parametrize("result", [float("inf"), float("-inf"), 1.9, True, "\u0661", 2, 1e300])
def test_result_other_than_one_or_zero_is_a_protocol_error(result: object) -> None:
    body = {"data": {"pops": []}, "metadata": {"result": result, "reason": "OK"}}
    with pytest.raises(WHMError) as err:
        parse.pops(body)
    assert err.value.reason == "protocol"


@pytest.mark.parametrize("result", [1, "1", 1.0])
def test_result_one_is_success_as_int_digit_string_or_integral_number(result: object) -> None:
    assert parse.pops({"data": {"pops": ["a@b.c"]}, "metadata": {"result": result}}) == ["a@b.c"]


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def test_counter_string_too_long_for_int_is_a_protocol_error() -> None:
    body = ok("get_mailbox_status", {"INBOX": {"messages": "9" * 5000, "vsize": 1}})
    with pytest.raises(WHMError) as err:
        parse.mailbox_status(body)
    assert err.value.reason == "protocol"
    assert len(err.value.detail) < 200


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (ok("get_mailbox_status", {"INBOX": {"messages": nested(5000), "vsize": 1}}), "protocol"),
        ({"metadata": {"result": nested(5000)}}, "protocol"),
        ({"metadata": {"result": 0, "reason": nested(5000)}}, "api"),
    ],
)
def test_deeply_nested_values_fail_with_a_short_detail(body: Any, reason: str) -> None:
    with pytest.raises(WHMError) as err:
        parse.mailbox_status(body)
    assert err.value.reason == reason
    assert len(err.value.detail) < 200


class Exploding(dict[str, Any]):
    """A body whose every lookup fails with an error no parser anticipates."""

    def get(self, *args: Any) -> Any:
        raise RuntimeError("boom")

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("boom")


@pytest.mark.parametrize("parser", PARSERS)
def test_any_failure_inside_a_parser_is_a_protocol_error(parser: Any) -> None:
    with pytest.raises(WHMError) as err:
        parser(Exploding(metadata={"result": 1}, data={}))
    assert err.value.reason == "protocol"


LIST = "get_mailbox_status_list"
SENDERS = "get_unique_recipient_count_per_sender_for_user"
TOTALS = "get_unique_sender_recipient_count_per_user"


def folder(**fields: Any) -> dict[str, Any]:
    return ok(LIST, {"mailboxes": [{"mailbox": "INBOX", "messages": 1, "vsize": 1, **fields}]})


# What an operator reads on the debug page for each broken answer: the field at fault and the
# value, cut to 60 characters.
DETAILS = [
    (parse.mailbox_status_list, [], "answer is list, expected a JSON object"),
    (parse.mailbox_status_list, {"data": {}}, "answer has no metadata.result"),
    (parse.mailbox_status_list, {"metadata": {}}, "answer has no metadata.result"),
    (parse.mailbox_status_list, {"metadata": ["result"]}, "answer has no metadata.result"),
    (parse.pops, {"metadata": {"result": 2}}, "metadata.result is 2, expected 1 or 0"),
    (parse.pops, {"metadata": {"result": "yes"}}, "metadata.result is not a whole number: 'yes'"),
    (parse.mailbox_status_list, ok(LIST, None), "data is NoneType, expected an object"),
    (parse.mailbox_status_list, ok(LIST, {}), "data has no 'mailboxes'"),
    (
        parse.mailbox_status_list,
        ok(LIST, {"mailboxes": {}}),
        "data.mailboxes is dict, expected a list",
    ),
    (
        parse.mailbox_status_list,
        ok(LIST, {"mailboxes": [3]}),
        "mailbox entry is int, expected an object",
    ),
    (parse.mailbox_status_list, folder(mailbox=3), "mailbox name is not a non-empty string: 3"),
    (
        parse.mailbox_status_list,
        folder(messages="x" * 100),
        "INBOX.messages is not a whole number: " + repr("x" * 100)[:60],
    ),
    (
        parse.mailbox_status_list,
        folder(vsize=[1]),
        "INBOX.vsize is not a whole number: a JSON array",
    ),
    (
        parse.mailbox_status_list,
        folder(vsize={"a": 1}),
        "INBOX.vsize is not a whole number: a JSON object",
    ),
    (parse.mailbox_status_list, folder(messages=-1), "INBOX.messages is out of range: -1"),
    (
        parse.mailbox_status_list,
        folder(messages=2**53 + 1),
        f"INBOX.messages is out of range: {2**53 + 1}",
    ),
    (
        parse.mailbox_status_list,
        folder(messages="9" * 17),
        f"INBOX.messages is out of range: '{'9' * 17}'",
    ),
    (
        parse.mailbox_status_list,
        ok(LIST, {"mailboxes": [{"mailbox": "INBOX", "vsize": 1}]}),
        "INBOX has no 'messages'",
    ),
    (
        parse.mailbox_status_list,
        ok(LIST, {"mailboxes": [{"mailbox": "INBOX", "messages": 1}]}),
        "INBOX has no 'vsize'",
    ),
    (parse.mailbox_status, ok("get_mailbox_status", []), "data is list, expected an object"),
    (
        parse.sender_counts,
        ok(SENDERS, {"payload": [{"unique_recipient_count": 1}]}),
        "payload entry has no 'sender'",
    ),
    (
        parse.sender_counts,
        ok(SENDERS, {"payload": [{"sender": ""}]}),
        "sender is not a non-empty string: ''",
    ),
    (
        parse.sender_counts,
        ok(SENDERS, {"payload": [{"sender": "a@b.c"}]}),
        "a@b.c has no 'unique_recipient_count'",
    ),
    (
        parse.sender_counts,
        ok(SENDERS, {"payload": [{"sender": "a@b.c", "unique_recipient_count": "x"}]}),
        "a@b.c count is not a whole number: 'x'",
    ),
    (
        parse.user_totals,
        ok(TOTALS, {"payload": [{"user": "bob", "unique_sender_recipient_count": 1}] * 2}),
        "user 'bob' appears twice",
    ),
    (parse.accounts, ok("listaccts", {"acct": [{"suspended": 0}]}), "acct entry has no 'user'"),
    (
        parse.accounts,
        ok("listaccts", {"acct": [{"user": "bob", "suspended": "x"}]}),
        "suspended is not a whole number: 'x'",
    ),
    (parse.pops, ok("list_pops_for", {"pops": [3]}), "pop is not a non-empty string: 3"),
    (parse.pops, Exploding(metadata={"result": 1}), "unreadable answer (RuntimeError)"),
]


@pytest.mark.parametrize(("parser", "body", "detail"), DETAILS)
def test_each_broken_answer_names_what_is_wrong(parser: Any, body: Any, detail: str) -> None:
    with pytest.raises(WHMError) as err:
        parser(body)
    assert (err.value.reason, err.value.detail) == ("protocol", detail)


@pytest.mark.parametrize("parser", PARSERS)
def test_a_failure_keeps_whms_reason_in_every_parser(parser: Any) -> None:
    with pytest.raises(WHMError) as err:
        parser({"metadata": {"result": "0", "reason": "API failure: (XID 1a) nope"}})
    assert (err.value.reason, err.value.detail) == ("api", "API failure: (XID 1a) nope")
    with pytest.raises(WHMError) as err:
        parser({"metadata": {"result": 0, "reason": ""}})
    assert (err.value.reason, err.value.detail) == ("api", "no reason given")


@pytest.mark.parametrize("value", [0, "0", "000", "9007199254740992", 2**53, float(2**53)])
def test_counters_at_the_edges_of_the_range_are_accepted(value: object) -> None:
    assert parse.counter(value, "x") == int(value)  # type: ignore[call-overload]


def test_listaccts_flags_left_out_are_off() -> None:
    # want= can leave any of them out of the answer.
    assert parse.accounts(ok("listaccts", {"acct": [{"user": "bob"}]})) == [
        parse.Account("bob", suspended=False, outgoing_held=False, outgoing_suspended=False)
    ]


ROLE_OFF = (
    "This functionality is not available because the “MailReceive” role is disabled on this server."
)


def uapi(**result: Any) -> dict[str, Any]:
    """A uapi_cpanel answer: WHM's envelope around the UAPI result."""
    return ok("uapi_cpanel", {"uapi": result})


# uapi_cpanel reports success for the passthrough itself; the UAPI function's own failure is in
# data.uapi.status and errors (uapi_cpanel reference).
@pytest.mark.parametrize(
    ("body", "reason", "detail"),
    [
        (ok("uapi_cpanel", {}), "protocol", "data has no 'uapi'"),
        (ok("uapi_cpanel", {"uapi": []}), "protocol", "data.uapi is list, expected an object"),
        (uapi(), "protocol", "data.uapi has no 'status'"),
        (uapi(status="x"), "protocol", "data.uapi.status is not a whole number: 'x'"),
        (uapi(status=1, data={}), "protocol", "data.uapi.data is dict, expected a list"),
        (uapi(status=0, errors=["one", "two"]), "api", "list_pops_with_disk: one; two"),
        (uapi(status=0, errors=None), "api", "list_pops_with_disk: failed"),
        (uapi(status=0, errors=[]), "api", "list_pops_with_disk: failed"),
        (uapi(status=0, errors="oops"), "api", "list_pops_with_disk: failed"),
        (uapi(status=0, errors=[ROLE_OFF]), "role_disabled", ROLE_OFF),
    ],
)
def test_uapi_failures_name_what_is_wrong(body: Any, reason: str, detail: str) -> None:
    with pytest.raises(WHMError) as err:
        parse.pops_with_disk(body)
    assert (err.value.reason, err.value.detail) == (reason, detail)
