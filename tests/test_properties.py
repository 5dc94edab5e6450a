"""Property-based: whatever JSON WHM sends, a parser returns records or raises WHMError;
whatever document a config holds, the loader returns a config or raises ConfigError."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from whm_exporter.config import build_config
from whm_exporter.whm import parse
from whm_exporter.whm.errors import WHMError
from whm_exporter.yamlconf import ConfigError

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

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=30,
)
# Shapes close to real answers, so the inner checks get reached, not only the envelope's.
result = st.sampled_from([1, "1", 0, "0", None, "x", 1.0, True])
keys = st.sampled_from(
    [
        "mailboxes",
        "payload",
        "acct",
        "pops",
        "INBOX",
        "mailbox",
        "messages",
        "vsize",
        "sender",
        "unique_recipient_count",
        "user",
        "unique_sender_recipient_count",
        "suspended",
    ]
)
near_items = st.dictionaries(keys, scalars | json_values, max_size=5)
near_data = (
    st.dictionaries(keys, st.lists(near_items | scalars, max_size=4) | near_items, max_size=3)
    | json_values
)
envelopes = st.fixed_dictionaries(
    {
        "metadata": st.fixed_dictionaries({"result": result}, optional={"reason": scalars}),
        "data": near_data,
    }
)


def _only_whm_errors(body: Any) -> None:
    for parser in PARSERS:
        with contextlib.suppress(WHMError):
            parser(body)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_only_raises_whm_error(body: Any) -> None:
    _only_whm_errors(body)


@settings(max_examples=500, deadline=None)
@given(envelopes)
def test_near_valid_answers_only_raise_whm_error(body: Any) -> None:
    _only_whm_errors(body)


config_keys = st.sampled_from(
    [
        "modules",
        "targets",
        "default",
        "token",
        "token_env",
        "url",
        "module",
        "users",
        "timeout",
        "tls",
        "windows",
        "mailboxes",
        "unique_recipients",
        "discovery",
        "include_folders",
        "x",
    ]
)
config_docs = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(config_keys, inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(config_docs)
def test_arbitrary_config_documents_only_raise_config_error(document: Any) -> None:
    try:
        build_config(document, env={})
    except ConfigError as err:
        problems = err.problems
    else:
        return
    assert problems
    assert all(isinstance(p, str) and p for p in problems)
