"""Writes the dashboards in this folder: python grafana/generate.py

The JSON files are what users import (Grafana 10+, Import screen or file provisioning); this
script is how they are kept consistent (one datasource variable, the same job/instance
variables, a description on every panel, tables without Time/__name__/job columns, links from a
sender, user or account to its detail panels). Thresholds come from the recording rules of
prometheus/whm-exporter.rules.yml (whm:threshold:*), never from a number in a panel. A test
fails when the files and the script disagree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'job=~"$job", instance=~"$instance"'
WIN = f'{SEL}, window=~"$window"'
EXPORTER = 'job=~"$exporter_job", target=~"$instance"'
BY_ACCOUNT = "sum by (instance, user, account)"
GREEN = {"color": "green", "value": None}
# Columns a table never needs: the sample time, the metric name and the scrape job.
HIDDEN = ("Time", "__name__", "job")
# The dashboards a link opens, and the variables it carries over.
OUTBOUND = "/d/whm-outbound/whm-outbound-sending"
OVERVIEW = "/d/whm-mail-overview/whm-mail-overview"
KEEP = "${__url_time_range}&${datasource:queryparam}&${job:queryparam}"
# cPanel's outbound-spam detection (whm_outbound_spam_detection_enabled), cPHulk
# (whm_cphulk_enabled).
ON_OFF_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "0": {"text": "off", "color": "orange", "index": 0},
            "1": {"text": "on", "color": "green", "index": 1},
        },
    }
]
UP_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "0": {"text": "down", "color": "red", "index": 0},
            "1": {"text": "up", "color": "green", "index": 1},
        },
    }
]


def _var_query(name: str, label: str, query: str, *, multi: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": {"query": query, "refId": f"var-{name}"},
        "definition": query,
        "refresh": 2,
        "multi": multi,
        "includeAll": multi,
        "allValue": ".*" if multi else None,
        "current": {},
        "sort": 1,
    }


def _variables(*extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "list": [
            {
                "name": "datasource",
                "label": "Data source",
                "type": "datasource",
                "query": "prometheus",
                "current": {},
                "refresh": 1,
            },
            _var_query("job", "Job", "label_values(whm_up, job)"),
            _var_query("instance", "WHM server", 'label_values(whm_up{job=~"$job"}, instance)'),
            *extra,
        ]
    }


def _link(title: str, dashboard: str, table: bool, *labels: str) -> dict[str, Any]:
    """A data link to ``dashboard`` with the clicked row's or series' ``labels`` as variables."""
    value = "${__data.fields.%s}" if table else "${__field.labels.%s}"
    params = "".join(f"&var-{label}={value % label}" for label in ("instance", *labels))
    return {"title": title, "url": f"{dashboard}?{KEEP}{params}"}


def sender_link(table: bool = False) -> dict[str, Any]:
    return _link("Sender detail", OUTBOUND, table, "user", "sender")


def user_link(table: bool = False) -> dict[str, Any]:
    return _link("The user's senders and mail flow", OUTBOUND, table, "user")


def account_link(table: bool = False) -> dict[str, Any]:
    return _link("Account detail", OVERVIEW, table, "user", "account")


def _panel(
    kind: str,
    title: str,
    description: str,
    targets: list[tuple[str, str]],
    grid: tuple[int, int, int, int],
    *,
    unit: str = "short",
    instant: bool = False,
    thresholds: list[dict[str, Any]] | None = None,
    options: dict[str, Any] | None = None,
    defaults: dict[str, Any] | None = None,
    overrides: list[dict[str, Any]] | None = None,
    links: list[dict[str, Any]] | None = None,
    transformations: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    x, y, w, h = grid
    field_defaults: dict[str, Any] = {
        "unit": unit,
        "thresholds": {"mode": "absolute", "steps": thresholds or [GREEN]},
        **(defaults or {}),
    }
    if links:
        field_defaults["links"] = links
    panel: dict[str, Any] = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": field_defaults, "overrides": overrides or []},
        "options": options or {},
        "targets": [
            {
                "datasource": DS,
                "expr": expr,
                "legendFormat": legend,
                "refId": chr(ord("A") + i),
                "instant": instant,
                "range": not instant,
                **({"format": "table"} if kind == "table" else {}),
            }
            for i, (expr, legend) in enumerate(targets)
        ],
    }
    if transformations:
        panel["transformations"] = transformations
    return panel


def _table(
    title: str,
    description: str,
    by: str,
    columns: list[tuple[str, str, str]],
    grid: tuple[int, int, int, int],
    *,
    hide: tuple[str, ...] = (),
    sort_by: str | None = None,
    links: list[dict[str, Any]] | None = None,
    mappings: dict[str, list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """A table of the current values: one query per (expr, column title, unit), each reduced to
    the labels ``by`` so that rows of different metrics merge into one; those labels are the
    other columns. ``mappings``: value mappings of a column, by its title."""
    names = (
        {"Value": columns[0][1]}
        if len(columns) == 1
        else {f"Value #{chr(ord('A') + i)}": c[1] for i, c in enumerate(columns)}
    )
    transformations: list[dict[str, Any]] = (
        [] if len(columns) == 1 else [{"id": "merge", "options": {}}]
    )
    transformations.append(
        {
            "id": "organize",
            "options": {
                "excludeByName": {name: True for name in (*HIDDEN, *hide)},
                "renameByName": names,
            },
        }
    )
    overrides = [
        {
            "matcher": {"id": "byName", "options": column},
            "properties": [{"id": "unit", "value": unit}],
        }
        for _, column, unit in columns
        if unit != "short"
    ] + [
        {
            "matcher": {"id": "byName", "options": column},
            "properties": [{"id": "mappings", "value": values}],
        }
        for column, values in (mappings or {}).items()
    ]
    options: dict[str, Any] = {"showHeader": True, "cellHeight": "sm"}
    if sort_by:
        options["sortBy"] = [{"displayName": sort_by, "desc": True}]
    return _panel(
        "table",
        title,
        description,
        [(f"max by ({by}) ({expr})", "") for expr, _, _ in columns],
        grid,
        instant=True,
        options=options,
        overrides=overrides,
        links=links,
        transformations=transformations,
    )


def _dashboard(
    uid: str, title: str, variables: dict[str, Any], panels: list[dict[str, Any]]
) -> dict[str, Any]:
    for i, panel in enumerate(panels, start=1):
        panel["id"] = i
    return {
        "uid": uid,
        "title": title,
        "description": f"{title}, from whm-exporter (cPanel & WHM mail).",
        "tags": ["whm", "cpanel", "mail", "whm-exporter"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "1m",
        "timezone": "",
        "templating": variables,
        "annotations": {"list": []},
        "links": [
            {
                "title": "WHM dashboards",
                "type": "dashboards",
                "tags": ["whm-exporter"],
                "asDropdown": True,
            }
        ],
        "panels": panels,
    }


def mail_overview() -> dict[str, Any]:
    user_sel = f'{SEL}, user=~"$user"'
    acct_sel = f'{user_sel}, account=~"$account"'
    variables = _variables(
        _var_query("user", "cPanel user", f"label_values(whm_mailbox_messages{{{SEL}}}, user)"),
        _var_query(
            "account",
            "Email account",
            f'label_values(whm_mailbox_messages{{{SEL}, user=~"$user"}}, account)',
        ),
    )
    bars = {"displayMode": "gradient", "orientation": "horizontal", "showUnfilled": True}
    nearest = f"topk(20, whm:account_quota_used:ratio{{{user_sel}}})"
    return _dashboard(
        "whm-mail-overview",
        "WHM mail overview",
        variables,
        [
            _panel(
                "stat",
                "Messages",
                "Messages in every folder of the selected accounts.",
                [(f"sum(whm_mailbox_messages{{{acct_sel}}})", "messages")],
                (0, 0, 6, 4),
            ),
            _panel(
                "stat",
                "Mail stored",
                "Virtual size of every folder of the selected accounts.",
                [(f"sum(whm_mailbox_size_bytes{{{acct_sel}}})", "size")],
                (6, 0, 6, 4),
                unit="bytes",
            ),
            _panel(
                "stat",
                "Accounts scraped",
                "Email accounts and main mailboxes the exporter scrapes.",
                [(f"sum(whm_discovered_accounts{{{SEL}}})", "accounts")],
                (12, 0, 6, 4),
            ),
            _panel(
                "stat",
                "cPanel users scraped",
                "cPanel users the exporter scrapes.",
                [(f"sum(whm_discovered_users{{{SEL}}})", "users")],
                (18, 0, 6, 4),
            ),
            _panel(
                "bargauge",
                "Top accounts by messages",
                "The ten accounts holding the most messages, all folders together. Click one "
                "for its folders and growth.",
                [
                    (
                        f"topk(10, {BY_ACCOUNT} (whm_mailbox_messages{{{user_sel}}}))",
                        "{{account}}",
                    )
                ],
                (0, 4, 12, 9),
                instant=True,
                options=bars,
                links=[account_link()],
            ),
            _panel(
                "bargauge",
                "Top accounts by size",
                "The ten accounts using the most space (virtual size), all folders together. "
                "Click one for its folders and growth.",
                [
                    (
                        f"topk(10, {BY_ACCOUNT} (whm_mailbox_size_bytes{{{user_sel}}}))",
                        "{{account}}",
                    )
                ],
                (12, 4, 12, 9),
                unit="bytes",
                instant=True,
                options=bars,
                links=[account_link()],
            ),
            _panel(
                "bargauge",
                "Folders of the selected accounts",
                "Size of each folder of the accounts chosen above, largest first.",
                [
                    (
                        "sort_desc(sum by (account, mailbox)"
                        f" (whm_mailbox_size_bytes{{{acct_sel}}}))",
                        "{{account}} {{mailbox}}",
                    )
                ],
                (0, 13, 12, 9),
                unit="bytes",
                instant=True,
                options=bars,
            ),
            _panel(
                "timeseries",
                "Growth over time",
                "Size of the selected accounts over time; a steep line is a mailbox filling up.",
                [(f"sum by (account) (whm_mailbox_size_bytes{{{acct_sel}}})", "{{account}}")],
                (12, 13, 12, 9),
                unit="bytes",
            ),
            _panel(
                "bargauge",
                "Mailboxes nearest their quota",
                "Share of its quota each mailbox uses (discovery.function: list_pops_with_disk; "
                "mailboxes without a quota are not shown). WhmMailboxNearQuota fires at "
                "whm:threshold:quota_used_ratio (recording rules).",
                [(f"topk(10, whm:account_quota_used:ratio{{{user_sel}}})", "{{account}}")],
                (0, 22, 12, 9),
                unit="percentunit",
                instant=True,
                options=bars,
                defaults={"min": 0, "max": 1, "color": {"mode": "continuous-GrYlRd"}},
                links=[account_link()],
            ),
            _table(
                "Disk use against quota",
                "The twenty mailboxes using the largest share of their quota: disk use and "
                "quota as cPanel counts them (Email::list_pops_with_disk).",
                "instance, user, account",
                [
                    (nearest, "Share of quota", "percentunit"),
                    (
                        f"whm_account_disk_used_bytes{{{user_sel}}}"
                        f" and on (instance, user, account) {nearest}",
                        "Used",
                        "bytes",
                    ),
                    (
                        f"whm_account_quota_bytes{{{user_sel}}}"
                        f" and on (instance, user, account) {nearest}",
                        "Quota",
                        "bytes",
                    ),
                ],
                (12, 22, 12, 9),
                sort_by="Share of quota",
                links=[account_link(table=True)],
            ),
            _panel(
                "timeseries",
                "Days until full",
                "Days until each mailbox reaches its quota at its growth over the last day "
                "(whm:account_quota:seconds_to_full: mailboxes with a quota, growing, with a day "
                "of history), the ten soonest, and the time left at which WhmMailboxFullSoon "
                "fires (whm:threshold:quota_full_seconds). Click one for its folders and growth.",
                [
                    (
                        "bottomk(10, last_over_time(whm:account_quota:seconds_to_full"
                        f"{{{user_sel}}}[10m])) / 86400",
                        "{{account}}",
                    ),
                    ("max(whm:threshold:quota_full_seconds) / 86400", "alert threshold"),
                ],
                (0, 31, 24, 8),
                unit="d",
                links=[account_link()],
            ),
            _table(
                "Largest folders on the server",
                "The twenty largest folders across every account of the selected servers.",
                "instance, user, account, mailbox",
                [(f"topk(20, whm_mailbox_size_bytes{{{SEL}}})", "Size", "bytes")],
                (0, 39, 24, 9),
                sort_by="Size",
                links=[account_link(table=True)],
            ),
            *_queue_panels(48),
            *_login_panels(69),
            *_deliverability_panels(81),
        ],
    )


def _queue_panels(y: int) -> list[dict[str, Any]]:
    """Exim's queue on the selected servers (fetch_mail_queue): its size, its age, and who
    fills it, from ``y`` down, 21 grid rows."""
    bars = {"displayMode": "gradient", "orientation": "horizontal", "showUnfilled": True}
    manager = "WHM's Mail Queue Manager shows the messages and why each waits."
    return [
        _panel(
            "stat",
            "Messages in Exim's queue",
            "Messages waiting in Exim's queue of the selected servers (fetch_mail_queue, "
            "refreshed every few minutes). A queue that keeps growing: mail leaves slower than "
            "it comes in; see the senders and recipient domains below. WhmMailQueueLarge fires "
            "above whm:threshold:mail_queue_messages.",
            [(f"sum(whm_mail_queue_messages{{{SEL}}})", "messages")],
            (0, y, 6, 4),
        ),
        _panel(
            "stat",
            "Frozen in the queue",
            "Messages Exim has frozen: it no longer tries to deliver them. Mostly bounces to "
            "forged senders after spam came in or went out; they sit until Exim's "
            f"timeout_frozen_after or a hand removes them. {manager} WhmMailQueueFrozen fires "
            "when there are any for 30 minutes.",
            [(f"sum(whm_mail_queue_frozen_messages{{{SEL}}})", "frozen")],
            (6, y, 6, 4),
            thresholds=[GREEN, {"color": "orange", "value": 1}],
        ),
        _panel(
            "stat",
            "Bounces in the queue",
            "Queued bounces (delivery reports, empty sender <>). Many of them: the server "
            "bounces mail it accepted, often to spam's forged senders, or a spam run of one of "
            "its senders is being refused.",
            [(f"sum(whm_mail_queue_bounce_messages{{{SEL}}})", "bounces")],
            (12, y, 6, 4),
        ),
        _panel(
            "stat",
            "Queue size",
            "Bytes of the messages in Exim's queue of the selected servers (the disk it takes "
            "under /var/spool/exim).",
            [(f"sum(whm_mail_queue_size_bytes{{{SEL}}})", "size")],
            (18, y, 6, 4),
            unit="bytes",
        ),
        _panel(
            "timeseries",
            "Queue over time",
            "Messages in each server's queue, the frozen ones and the bounces, and the size at "
            "which WhmMailQueueLarge fires (whm:threshold:mail_queue_messages). A burst that "
            "drains again is normal; a line that only climbs is not.",
            [
                (f"sum by (instance) (whm_mail_queue_messages{{{SEL}}})", "{{instance}} queued"),
                (
                    f"sum by (instance) (whm_mail_queue_frozen_messages{{{SEL}}})",
                    "{{instance}} frozen",
                ),
                (
                    f"sum by (instance) (whm_mail_queue_bounce_messages{{{SEL}}})",
                    "{{instance}} bounces",
                ),
                ("max(whm:threshold:mail_queue_messages)", "alert threshold"),
            ],
            (0, y + 4, 8, 8),
        ),
        _panel(
            "timeseries",
            "Oldest queued message",
            "How long the oldest message in each server's queue has waited, and the age at "
            "which WhmMailQueueOldMessage fires (whm:threshold:mail_queue_age_seconds). No line: "
            "the queue is empty. An old message is one its receiver keeps deferring; Exim "
            f"bounces it when its retries run out. {manager}",
            [
                (
                    "max by (instance) (time() - "
                    f"whm_mail_queue_oldest_message_timestamp_seconds{{{SEL}}})",
                    "{{instance}}",
                ),
                ("max(whm:threshold:mail_queue_age_seconds)", "alert threshold"),
            ],
            (8, y + 4, 8, 8),
            unit="s",
        ),
        _panel(
            "bargauge",
            "Queued messages by age",
            "Messages that have waited in the queue longer than each age: what stays there "
            "after the first retries is deferred by its receiver, not merely in transit.",
            [
                (
                    f"sort_desc(sum by (older_than) (whm_mail_queue_aged_messages{{{SEL}}}))",
                    "older than {{older_than}}",
                )
            ],
            (16, y + 4, 8, 8),
            instant=True,
            options=bars,
        ),
        _table(
            "Top senders in the queue",
            "The twenty senders with the most queued messages, with their cPanel user (empty "
            "when the address is not on the server: a forwarder's or a forged one). A run of "
            "one sender is spam from a compromised account or script below cPanel's hourly "
            "check, or mail cPanel holds after it. Bounces (no sender) count under Bounces in "
            "the queue. WhmMailQueueSenderBacklog fires at "
            "whm:threshold:mail_queue_sender_messages. Click one for its sending.",
            "instance, user, sender",
            [
                (
                    f'topk(20, whm_mail_queue_sender_messages{{{SEL}, sender!=""}})',
                    "Queued",
                    "short",
                )
            ],
            (0, y + 12, 12, 9),
            sort_by="Queued",
            links=[sender_link(table=True)],
        ),
        _table(
            "Top recipient domains in the queue",
            "The twenty recipient domains with the most queued messages. A backlog to one "
            "provider is how a block list shows: it defers the server's mail, most often "
            "because the server's IP address is listed. Its deferral reason (Mail Queue "
            "Manager, or the mail delivery reports) names the list; then follow the list's "
            "delisting steps. WhmMailQueueDomainBacklog fires at "
            "whm:threshold:mail_queue_domain_messages.",
            "instance, domain",
            [
                (
                    f"topk(20, whm_mail_queue_recipient_domain_messages{{{SEL}}})",
                    "Queued",
                    "short",
                )
            ],
            (12, y + 12, 12, 9),
            sort_by="Queued",
        ),
    ]


def _login_panels(y: int) -> list[dict[str, Any]]:
    """cPHulk, cPanel's brute-force protection, on the selected servers: the failed logins it
    holds and what it blocks, from ``y`` down, 12 grid rows."""
    failures = f"whm_user_login_failures{{{SEL}}}"
    top = f"topk(10, sum by (job, instance, user) ({failures}))"
    return [
        _panel(
            "stat",
            "cPHulk",
            "Whether cPHulk, cPanel's brute-force protection, is on on each server "
            "(cphulk_status). Off: nothing blocks password guessing and the login panels "
            "stay empty; turn it on in WHM's cPHulk Brute Force Protection.",
            [(f"whm_cphulk_enabled{{{SEL}}}", "{{instance}}")],
            (0, y, 6, 4),
            defaults={"mappings": ON_OFF_MAPPINGS},
        ),
        _panel(
            "stat",
            "Failed logins held",
            "Failed logins cPHulk holds now on the selected servers, every service together "
            "(its lookback, 6 hours by default): a count of now, not since a start.",
            [(f"sum(whm_login_failures{{{SEL}}})", "failed logins")],
            (6, y, 6, 4),
        ),
        _panel(
            "stat",
            "Blocked by cPHulk now",
            "What cPHulk blocks now: user (users or addresses locked after too many failures), "
            "ip (addresses blocked for a while) and excessive_ip (addresses blocked for a "
            "day). Blocks on your own users or office address: WHM's cPHulk page lifts them.",
            [(f"sum by (kind) (whm_login_blocks{{{SEL}}})", "{{kind}}")],
            (12, y, 12, 4),
        ),
        _panel(
            "timeseries",
            "Failed logins by service",
            "Failed logins cPHulk holds at each moment, by the service logged in to (imap, "
            "pop3, smtp, cpaneld, ...): a count over its lookback, so a wave rises and falls "
            "again hours later. Mail passwords guessed at come before a compromised account "
            "sends.",
            [(f"sum by (service) (whm_login_failures{{{SEL}}})", "{{service}}")],
            (0, y + 4, 12, 8),
        ),
        _table(
            "Most failed logins by user or address",
            "The ten users or addresses (as logged in with) with the most failed logins cPHulk "
            "holds, one row per service. WhmUserLoginFailures fires when one reaches "
            "whm:threshold:user_login_failures over every service: someone is guessing its "
            "password. Make sure it is strong and watch its outgoing mail; cPHulk's page in "
            "WHM shows the addresses the attempts come from.",
            "instance, user, service",
            [(f"{failures} and on (job, instance, user) {top}", "Failed logins", "short")],
            (12, y + 4, 12, 8),
            sort_by="Failed logins",
        ),
    ]


def _deliverability_panels(y: int) -> list[dict[str, Any]]:
    """The domains whose mail authentication records cPanel does not find valid, from ``y``
    down, 8 grid rows."""
    return [
        _table(
            "Mail authentication records not valid",
            "Domains of the selected servers whose SPF, DKIM or PTR record cPanel does not "
            "find valid (its Email Deliverability checks, every few hours): receivers reject "
            "or junk their mail. The exporter's /probe?target=...&debug=true shows cPanel's "
            "state of each; WHM's Email Deliverability page shows the record to publish. "
            "WhmDomainMailAuthInvalid fires for those of users that sent mail in the last day. "
            "Click one for the user's sending.",
            "instance, user, domain, record",
            [(f"whm_domain_mail_auth_valid{{{SEL}}} == 0", "Valid", "short")],
            (0, y, 24, 8),
            hide=("Value",),
            links=[user_link(table=True)],
        ),
    ]


def outbound() -> dict[str, Any]:
    variables = _variables(
        _var_query(
            "window",
            "Window",
            f"label_values(whm_sender_unique_recipients{{{SEL}}}, window)",
            multi=False,
        ),
        _var_query(
            "user", "cPanel user", f"label_values(whm_sender_unique_recipients{{{SEL}}}, user)"
        ),
        _var_query(
            "sender",
            "Sender",
            f'label_values(whm_sender_unique_recipients{{{SEL}, user=~"$user"}}, sender)',
        ),
    )
    picked = f'{WIN}, user=~"$user", sender=~"$sender"'
    # What cPanel's check does on each server (one series per server, value 1), and its
    # threshold as the rules take it without a user's override: the server's own setting, else
    # the rules' default (a reseller's token cannot read the setting).
    action = f"whm:outbound_spam:action{{{SEL}}}"
    server_threshold = (
        f"max by (job, instance) (whm_outbound_spam_threshold_recipients{{{SEL}}})"
        f" or 0 * max by (job, instance) ({action})"
        ' + on () group_left () max(whm:threshold:outbound_spam{user=""})'
    )
    # The users nearest their hourly cap: messages sent in the last hour against it.
    near_cap = (
        f'topk(20, whm_user_mail_sent_messages{{{SEL}, window="1h"}}'
        f" / on (job, instance, user) group_left () whm_user_hourly_email_limit_messages{{{SEL}}})"
    )
    reached = f"whm_user_mail_limit_reached{{{SEL}}} == 1"
    over = f"whm:sender_unique_recipients:over_threshold{{{SEL}}}"
    usual = f"last_over_time(whm:sender_unique_recipients:usual{{{SEL}}}[2h])"
    flow = f'{WIN}, user=~"$user"'
    share: list[dict[str, Any]] = [
        GREEN,
        {"color": "orange", "value": 0.8},
        {"color": "red", "value": 1},
    ]
    return _dashboard(
        "whm-outbound",
        "WHM outbound sending",
        variables,
        [
            _panel(
                "timeseries",
                "Top senders by unique recipients",
                "The ten senders that reached the most unique remote recipients in the window, "
                "and each server's threshold: its own Tweak Setting "
                "(whm_outbound_spam_threshold_recipients), else the rules' default "
                "(whm:threshold:outbound_spam, cPanel's 500). A user's override in the rules "
                "shows under Selected senders. Click a sender for its detail.",
                [
                    (f"topk(10, whm_sender_unique_recipients{{{WIN}}})", "{{sender}}"),
                    (f"max by (instance) ({server_threshold})", "{{instance}} threshold"),
                ],
                (0, 0, 16, 9),
                links=[sender_link()],
            ),
            _panel(
                "stat",
                "Senders over their threshold",
                "Senders above the threshold that applies to them in the 1h window (per-user "
                "overrides included): what WhmOutboundSpamSuspected fires on.",
                [(f"count({over}) or vector(0)", "senders")],
                (16, 0, 8, 4),
                thresholds=[GREEN, {"color": "red", "value": 1}],
            ),
            _panel(
                "stat",
                "Closest to the threshold",
                "The highest unique-recipient count of any sender in the 1h window, as a share "
                "of its threshold: above 100% cPanel counts it as spam.",
                [
                    (
                        f'max(whm_sender_unique_recipients{{{SEL}, window="1h"}}'
                        f" / whm:sender_unique_recipients:threshold{{{SEL}}})",
                        "share",
                    )
                ],
                (16, 4, 8, 5),
                unit="percentunit",
                thresholds=share,
            ),
            _table(
                "Senders over their threshold",
                "Every sender above its threshold now, with its cPanel user: the accounts to "
                "check for a leaked password or a compromised script. Click one for its detail.",
                "instance, user, sender",
                [
                    (over, "Unique recipients", "short"),
                    (
                        f"whm:sender_unique_recipients:threshold{{{SEL}}}"
                        f" and on (job, instance, user, sender, window) {over}",
                        "Threshold",
                        "short",
                    ),
                ],
                (0, 9, 16, 7),
                sort_by="Unique recipients",
                links=[sender_link(table=True)],
            ),
            _table(
                "cPanel's spam check per server",
                "Each server's own outbound-spam detection (Tweak Settings, read with "
                "get_tweaksetting): on or off, its threshold of unique recipients per sender "
                "and hour, and what cPanel does to a sender over it at its check (:05, :20, :35, "
                ":50): noaction, hold or block (whm:outbound_spam:action; off when detection is "
                "off, unknown when the token cannot read the settings, a reseller's: the "
                "threshold is then the rules' default).",
                "instance, action",
                [
                    (
                        f"whm_outbound_spam_detection_enabled{{{SEL}}}"
                        f" * on (job, instance) group_left (action) {action}",
                        "Detection",
                        "short",
                    ),
                    (
                        f"({server_threshold}) * on (job, instance) group_left (action) {action}",
                        "Threshold",
                        "short",
                    ),
                ],
                (16, 9, 8, 7),
                mappings={"Detection": ON_OFF_MAPPINGS},
            ),
            _panel(
                "timeseries",
                "Senders against their usual level",
                "Each sender's unique recipients in the last hour divided by its usual level (the "
                "90th percentile of its hours over the past week, whm:sender_unique_recipients:"
                "usual; a sender with less than a day of history has none), the ten highest, and "
                "the ratio from which WhmSenderUnusualVolume fires (whm:threshold:"
                "unusual_volume_ratio) for senders with at least whm:threshold:"
                "unusual_volume_floor recipients, under the spam threshold. Click a sender for "
                "its detail.",
                [
                    (
                        f'topk(10, whm_sender_unique_recipients{{{SEL}, window="1h"}}'
                        f" / on (job, instance, user, sender, window) {usual})",
                        "{{sender}}",
                    ),
                    ("max(whm:threshold:unusual_volume_ratio)", "unusual threshold"),
                ],
                (0, 16, 16, 8),
                links=[sender_link()],
            ),
            _panel(
                "stat",
                "Senders far above their usual level",
                "Senders at whm:threshold:unusual_volume_ratio times their usual level or more, "
                "with at least whm:threshold:unusual_volume_floor unique recipients in the last "
                "hour and not over their spam threshold: what WhmSenderUnusualVolume fires on.",
                [
                    (
                        f"count(whm:sender_unique_recipients:unusual{{{SEL}}}) or vector(0)",
                        "senders",
                    )
                ],
                (16, 16, 8, 8),
                thresholds=[GREEN, {"color": "orange", "value": 1}],
            ),
            _panel(
                "timeseries",
                "Selected senders",
                "The senders chosen above (or linked from another panel) over time, each with "
                "the threshold that applies to it.",
                [
                    (f"whm_sender_unique_recipients{{{picked}}}", "{{sender}}"),
                    (
                        f'whm:sender_unique_recipients:threshold{{{SEL}, user=~"$user",'
                        ' sender=~"$sender"}',
                        "{{sender}} threshold",
                    ),
                ],
                (0, 24, 12, 8),
            ),
            _panel(
                "timeseries",
                "Per-user totals",
                "Unique remote recipients per cPanel user, as WHM counts them (per_user_totals). "
                "Click a user for its senders and mail flow.",
                [(f"topk(10, whm_user_unique_recipients{{{WIN}}})", "{{user}}")],
                (12, 24, 12, 8),
                links=[user_link()],
            ),
            _panel(
                "bargauge",
                "Top users by defer-failures",
                "Messages of each user deferred or failed in the window (emailtrack_user_stats "
                "DEFERFAILCOUNT): receivers refusing mail is how spam shows when it reaches few "
                "addresses. WhmMailDeferFailHigh fires at whm:threshold:mail_defer_failures.",
                [(f"topk(10, whm_user_mail_defer_failures{{{WIN}}})", "{{user}}")],
                (0, 32, 8, 9),
                instant=True,
                options={"displayMode": "gradient", "orientation": "horizontal"},
                links=[user_link()],
            ),
            _panel(
                "timeseries",
                "Sent, delivered, deferred, failed",
                "Mail flow of the users chosen above, summed: messages sent, delivered, deferred "
                "and failed in the window (emailtrack_user_stats, per message).",
                [
                    (f"sum(whm_user_mail_sent_messages{{{flow}}})", "sent"),
                    (f"sum(whm_user_mail_delivered{{{flow}}})", "delivered"),
                    (f"sum(whm_user_mail_deferrals{{{flow}}})", "deferred"),
                    (f"sum(whm_user_mail_failures{{{flow}}})", "failed"),
                ],
                (8, 32, 16, 9),
            ),
            _table(
                "Mail flow per user",
                "Every user that sent mail in the window, most defer-failures first. Click a "
                "user for its senders.",
                "instance, user",
                [
                    (f"whm_user_mail_sent_messages{{{WIN}}}", "Sent", "short"),
                    (f"whm_user_mail_delivered{{{WIN}}}", "Delivered", "short"),
                    (f"whm_user_mail_deferrals{{{WIN}}}", "Deferred", "short"),
                    (f"whm_user_mail_failures{{{WIN}}}", "Failed", "short"),
                    (f"whm_user_mail_defer_failures{{{WIN}}}", "Defer-failures", "short"),
                    (f"whm_user_mail_sent_bytes{{{WIN}}}", "Bytes sent", "bytes"),
                ],
                (0, 41, 24, 9),
                sort_by="Defer-failures",
                links=[user_link(table=True)],
            ),
            _table(
                "cPanel limits reached",
                "Users for whom cPanel's own per-hour limit tripped (max_emails_per_hour, "
                "max_defer_fail): cPanel defers or refuses their mail. With the numbers of "
                "cPanel's marker where it sent one: the messages sent against the hourly cap, or "
                "the deferrals and failures against the minimum that lets their share trigger "
                "(cPanel clears the marker at each full hour). Click one for its senders.",
                "instance, user, limit",
                [
                    (reached, "Reached", "short"),
                    (
                        f"whm_user_mail_limit_marker_messages{{{SEL}}}"
                        f" and on (job, instance, user, limit) {reached}",
                        "Count",
                        "short",
                    ),
                    (
                        f"whm_user_mail_limit_marker_threshold_messages{{{SEL}}}"
                        f" and on (job, instance, user, limit) {reached}",
                        "Limit",
                        "short",
                    ),
                ],
                (0, 50, 12, 7),
                hide=("Value #A",),
                links=[user_link(table=True)],
            ),
            _table(
                "Outgoing mail held or suspended",
                "Users whose outgoing mail cPanel already holds or suspends (listaccts): it has "
                "acted on them. Click one for its senders.",
                "instance, user, state",
                [
                    (
                        f'label_replace(whm_user_outgoing_mail_held{{{SEL}}} == 1, "state",'
                        ' "held", "", "") or label_replace(whm_user_outgoing_mail_suspended'
                        f'{{{SEL}}} == 1, "state", "suspended", "", "")',
                        "Flag",
                        "short",
                    )
                ],
                (12, 50, 12, 7),
                hide=("Value",),
                links=[user_link(table=True)],
            ),
            _table(
                "Users closest to their hourly cap",
                "The twenty users whose messages sent in the last hour come closest to the "
                "hourly cap cPanel enforces on each of their domains (its own max_email_per_hour "
                "from listaccts, else the server's maxemailsperhour; unlimited users are not "
                "shown). WhmMailHourlyLimitNear fires at whm:threshold:hourly_email_limit_ratio "
                "of it; past it cPanel defers the rest. Click one for its senders.",
                "instance, user",
                [
                    (near_cap, "Share of cap", "percentunit"),
                    (
                        f'whm_user_mail_sent_messages{{{SEL}, window="1h"}}'
                        f" and on (job, instance, user) {near_cap}",
                        "Sent in the last hour",
                        "short",
                    ),
                    (
                        f"whm_user_hourly_email_limit_messages{{{SEL}}}"
                        f" and on (job, instance, user) {near_cap}",
                        "Hourly cap",
                        "short",
                    ),
                ],
                (0, 57, 24, 8),
                sort_by="Share of cap",
                links=[user_link(table=True)],
            ),
        ],
    )


def exporter_health() -> dict[str, Any]:
    variables = _variables(
        _var_query(
            "exporter_job",
            "Exporter job",
            "label_values(whm_exporter_build_info, job)",
        )
    )
    rate = "[$__rate_interval]"
    return _dashboard(
        "whm-exporter-health",
        "WHM exporter health",
        variables,
        [
            _panel(
                "state-timeline",
                "WHM up",
                "up when WHM answered and accepted the token since the previous scrape (whm_up).",
                [(f"whm_up{{{SEL}}}", "{{instance}}")],
                (0, 0, 12, 7),
                thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 1}],
                defaults={"mappings": UP_MAPPINGS},
            ),
            _panel(
                "state-timeline",
                "Scrapes succeeding",
                "Prometheus' own up, for the exporter's /metrics and for each /probe: down "
                "means the scrape itself failed.",
                [
                    ('up{job=~"$exporter_job"}', "exporter {{instance}}"),
                    (f"up{{{SEL}}}", "probe {{instance}}"),
                ],
                (12, 0, 12, 7),
                thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 1}],
                defaults={"mappings": UP_MAPPINGS},
            ),
            _panel(
                "timeseries",
                "Coverage",
                "Items (an address's mailboxes, a user's senders, ...) by state: fresh "
                "(answered since the previous scrape), kept (answered earlier, within max_age), "
                "missing (known, nothing to serve). Missing that stays up: the collection "
                "cannot keep up.",
                [
                    (
                        f"sum by (function, state) (whm_data_items{{{SEL}}})",
                        "{{function}} {{state}}",
                    )
                ],
                (0, 7, 12, 8),
                defaults={"custom": {"stacking": {"mode": "normal"}, "fillOpacity": 20}},
            ),
            _panel(
                "timeseries",
                "Data age",
                "Age of the oldest answer served, per function, and the age at which "
                "WhmDataStale counts it as stale (whm:threshold:data_age_seconds).",
                [
                    (f"max by (function) (whm_data_age_seconds{{{SEL}}})", "{{function}}"),
                    ("max(whm:threshold:data_age_seconds)", "stale from"),
                ],
                (12, 7, 12, 8),
                unit="s",
            ),
            _panel(
                "timeseries",
                "Probe duration against its timeout",
                "How long each probe took, next to the time it had (module timeout or scrape "
                "timeout minus 0.5s). Close to the timeout: raise it or scrape less.",
                [
                    (f"whm_probe_duration_seconds{{{SEL}}}", "{{instance}} duration"),
                    (f"whm_probe_timeout_seconds{{{SEL}}}", "{{instance}} timeout"),
                ],
                (0, 15, 12, 8),
                unit="s",
            ),
            _panel(
                "timeseries",
                "API errors by function and reason",
                "Failed WHM calls (and refused records) in each interval, for the functions and "
                "reasons that failed since the exporter began collecting. auth: token refused; "
                "role_disabled: server profile; protocol: unreadable answer; api: WHM said "
                "result 0. From the cumulative whm_api_call_errors_total, as the alerts: each "
                "Prometheus of an HA pair shows every error.",
                [
                    (
                        # Every reason of a function called is served at 0: show the pairs that
                        # ever failed, not a flat line for each of them.
                        "sum by (function, reason)"
                        f" (increase(whm_api_call_errors_total{{{SEL}}}{rate}))"
                        " and on (function, reason)"
                        f" (sum by (function, reason) (whm_api_call_errors_total{{{SEL}}}) > 0)",
                        "{{function}} {{reason}}",
                    )
                ],
                (12, 15, 12, 8),
            ),
            _panel(
                "timeseries",
                "WHM API latency",
                "Median and 95th percentile of each WHM function's call time, as the exporter "
                "measures it (whm_exporter_api_request_duration_seconds on its /metrics).",
                [
                    (
                        "histogram_quantile(0.5, sum by (le, function)"
                        f" (rate(whm_exporter_api_request_duration_seconds_bucket{{{EXPORTER}}}"
                        f"{rate})))",
                        "{{function}} p50",
                    ),
                    (
                        "histogram_quantile(0.95, sum by (le, function)"
                        f" (rate(whm_exporter_api_request_duration_seconds_bucket{{{EXPORTER}}}"
                        f"{rate})))",
                        "{{function}} p95",
                    ),
                ],
                (0, 23, 12, 8),
                unit="s",
            ),
            _panel(
                "timeseries",
                "WHM API requests by outcome",
                "WHM calls per second by outcome, from the exporter's /metrics "
                "(whm_exporter_api_requests_total): the exchange's outcome (HTTP or transport), so "
                "an answer WHM refuses inside (api, role_disabled) counts as success here.",
                [
                    (
                        "sum by (outcome)"
                        f" (rate(whm_exporter_api_requests_total{{{EXPORTER}}}{rate}))",
                        "{{outcome}}",
                    )
                ],
                (12, 23, 12, 8),
                unit="reqps",
            ),
            _panel(
                "timeseries",
                "WHM calls",
                "WHM API calls answered since the previous scrape, and calls cancelled (stop, "
                "reload, shutdown). Since the previous scrape by any Prometheus: of an HA pair, "
                "each shows part of them (requests by outcome shows them all).",
                [
                    (f"sum by (function) (whm_api_calls{{{SEL}}})", "{{function}}"),
                    (
                        f"sum by (function) (whm_api_calls_abandoned{{{SEL}}})",
                        "{{function}} abandoned",
                    ),
                ],
                (0, 31, 12, 8),
            ),
            _panel(
                "timeseries",
                "Probes by result",
                "Probes per second by result, from the exporter's /metrics "
                "(whm_exporter_probes_total).",
                [
                    (
                        f"sum by (target, result) (rate(whm_exporter_probes_total{{{EXPORTER}}}"
                        f"{rate}))",
                        "{{target}} {{result}}",
                    )
                ],
                (12, 31, 12, 8),
                unit="reqps",
            ),
            _panel(
                "timeseries",
                "Discovery",
                "cPanel users and email accounts being scraped, and whether a full discovery "
                "pass has finished (1).",
                [
                    (f"whm_discovered_users{{{SEL}}}", "{{instance}} users"),
                    (f"whm_discovered_accounts{{{SEL}}}", "{{instance}} accounts"),
                    (f"whm_discovery_complete{{{SEL}}}", "{{instance}} complete"),
                ],
                (0, 39, 12, 8),
            ),
            _panel(
                "timeseries",
                "Series dropped",
                "Series left out by folder filters, min_count and max_senders_per_user.",
                [(f"sum by (metric) (whm_series_dropped{{{SEL}}})", "{{metric}}")],
                (12, 39, 12, 8),
            ),
            _panel(
                "timeseries",
                "Load on WHM against its budget",
                "Seconds of WHM time per second the exporter's calls cost each target "
                "(whm:exporter_api_request_duration_seconds:rate5m, from "
                "whm_exporter_api_request_duration_seconds; 1 = one call in service at all "
                "times), summed over the exporters probing it, beside the modules' load_budget "
                "(whm_exporter_load_budget; a target without one shows no budget line). The spam "
                "signal is charged to the budget but never delayed by it, so a spam wave or a "
                "new server's first pass may go above.",
                [
                    (
                        "sum by (target)"
                        f" (whm:exporter_api_request_duration_seconds:rate5m{{{EXPORTER}}})",
                        "{{target}} load",
                    ),
                    (
                        f"sum by (target) (whm_exporter_load_budget{{{EXPORTER}}} > 0)",
                        "{{target}} budget",
                    ),
                ],
                (0, 47, 12, 8),
            ),
            _panel(
                "timeseries",
                "Answered with work pending",
                "1 when a probe answered before all its work was done: normal on a server too "
                "big for one scrape (the collection goes on); Coverage and Data age say whether "
                "it keeps up.",
                [(f"whm_probe_deadline_exceeded{{{SEL}}}", "{{instance}}")],
                (12, 47, 12, 8),
            ),
        ],
    )


DASHBOARDS = {
    "whm-mail-overview.json": mail_overview,
    "whm-outbound.json": outbound,
    "whm-exporter-health.json": exporter_health,
}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    for name, build in DASHBOARDS.items():
        (HERE / name).write_text(render(build), encoding="utf-8")
        print(f"wrote grafana/{name}")
