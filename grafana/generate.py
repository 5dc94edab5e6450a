"""Writes the dashboards in this folder: python grafana/generate.py

The JSON files are what users import (Grafana 10+, Import screen or file provisioning); this
script is how they are kept consistent (one datasource variable, the same job/instance
variables, a description on every panel). A test fails when the files and the script disagree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'job=~"$job", instance=~"$instance"'
BY_ACCOUNT = "sum by (instance, user, account)"


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
) -> dict[str, Any]:
    x, y, w, h = grid
    steps = thresholds or [{"color": "green", "value": None}]
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {
            "defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}},
            "overrides": [],
        },
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
                "The ten accounts holding the most messages, all folders together.",
                [
                    (
                        f"topk(10, {BY_ACCOUNT} (whm_mailbox_messages{{{user_sel}}}))",
                        "{{account}}",
                    )
                ],
                (0, 4, 12, 9),
                instant=True,
                options=bars,
            ),
            _panel(
                "bargauge",
                "Top accounts by size",
                "The ten accounts using the most space (virtual size), all folders together.",
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
                "table",
                "Largest folders on the server",
                "The twenty largest folders across every account of the selected servers.",
                [(f"topk(20, whm_mailbox_size_bytes{{{SEL}}})", "")],
                (0, 22, 24, 9),
                unit="bytes",
                instant=True,
            ),
        ],
    )


def outbound() -> dict[str, Any]:
    variables = _variables(
        _var_query(
            "window",
            "Window",
            f"label_values(whm_sender_unique_recipients{{{SEL}}}, window)",
            multi=False,
        ),
        {
            "name": "threshold",
            "label": "Threshold",
            "type": "textbox",
            "query": "500",
            "current": {"text": "500", "value": "500"},
            "description": "cPanel's outbound-spam threshold:"
            " 500 unique recipients per hour by default.",
        },
    )
    over = [{"color": "green", "value": None}, {"color": "red", "value": 500}]
    win = f'{SEL}, window=~"$window"'
    return _dashboard(
        "whm-outbound",
        "WHM outbound sending",
        variables,
        [
            _panel(
                "timeseries",
                "Top senders by unique recipients",
                "The ten senders that reached the most unique remote recipients in the window. "
                "Red above the threshold: cPanel's own outbound-spam limit is 500 per hour.",
                [
                    (f"topk(10, whm_sender_unique_recipients{{{win}}})", "{{sender}}"),
                    ("$threshold", "threshold"),
                ],
                (0, 0, 16, 10),
                thresholds=over,
            ),
            _panel(
                "stat",
                "Senders over the threshold",
                "How many senders are above the threshold now.",
                [
                    (
                        f"count(whm_sender_unique_recipients{{{win}}} > $threshold) or vector(0)",
                        "senders",
                    )
                ],
                (16, 0, 8, 5),
                thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 1}],
            ),
            _panel(
                "stat",
                "Busiest sender",
                "The highest unique-recipient count of any sender in the window.",
                [(f"max(whm_sender_unique_recipients{{{win}}})", "max")],
                (16, 5, 8, 5),
                thresholds=over,
            ),
            _panel(
                "timeseries",
                "Per-user totals",
                "Unique remote recipients per cPanel user, as WHM counts them (per_user_totals).",
                [(f"topk(10, whm_user_unique_recipients{{{win}}})", "{{user}}")],
                (0, 10, 24, 9),
            ),
            _panel(
                "table",
                "Senders over the threshold",
                "Every sender above the threshold now, with its cPanel user: the accounts to "
                "check for a leaked password or a compromised script.",
                [(f"sort_desc(whm_sender_unique_recipients{{{win}}} > $threshold)", "")],
                (0, 19, 24, 8),
                instant=True,
            ),
        ],
    )


def exporter_health() -> dict[str, Any]:
    return _dashboard(
        "whm-exporter-health",
        "WHM exporter health",
        _variables(),
        [
            _panel(
                "state-timeline",
                "WHM up",
                "1 when WHM answered and accepted the token in the probe (whm_up).",
                [(f"whm_up{{{SEL}}}", "{{instance}}")],
                (0, 0, 12, 7),
                thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 1}],
            ),
            _panel(
                "timeseries",
                "Scrapes succeeding",
                "Prometheus' own up: 0 means the exporter could not be scraped at all.",
                [('up{job=~"$job"}', "{{job}} {{instance}}")],
                (12, 0, 12, 7),
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
                (0, 7, 12, 8),
                unit="s",
            ),
            _panel(
                "timeseries",
                "API errors by function and reason",
                "Failed WHM calls per probe. auth: token refused; role_disabled: server profile; "
                "protocol: unreadable answer; api: WHM said result 0.",
                [
                    (
                        f"sum by (function, reason) (whm_api_errors{{{SEL}}})",
                        "{{function}} {{reason}}",
                    )
                ],
                (12, 7, 12, 8),
            ),
            _panel(
                "timeseries",
                "WHM calls per probe",
                "WHM API calls made (or served from cache).",
                [(f"sum by (function) (whm_api_calls{{{SEL}}})", "{{function}}")],
                (0, 15, 12, 8),
            ),
            _panel(
                "timeseries",
                "Series dropped",
                "Series left out by folder filters, min_count and max_senders_per_user.",
                [(f"sum by (metric) (whm_series_dropped{{{SEL}}})", "{{metric}}")],
                (12, 15, 12, 8),
            ),
            _panel(
                "timeseries",
                "Discovery",
                "cPanel users and email accounts being scraped.",
                [
                    (f"whm_discovered_users{{{SEL}}}", "{{instance}} users"),
                    (f"whm_discovered_accounts{{{SEL}}}", "{{instance}} accounts"),
                ],
                (0, 23, 12, 8),
            ),
            _panel(
                "timeseries",
                "Deadline exceeded",
                "1 when a probe stopped at its deadline with calls unanswered.",
                [(f"whm_probe_deadline_exceeded{{{SEL}}}", "{{instance}}")],
                (12, 23, 12, 8),
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
