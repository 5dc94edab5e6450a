"""Writes whm-exporter.rules.yaml, the PrometheusRule, from prometheus/whm-exporter.rules.yml:
python examples/kubernetes/generate.py

The rule file is the one source; this copies it whole (comments and thresholds included) under
`spec:`, so the two never drift. A test fails when the output and the script disagree.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
RULES = HERE.parent.parent / "prometheus" / "whm-exporter.rules.yml"
OUTPUT = HERE / "whm-exporter.rules.yaml"

HEADER = """\
# Written by examples/kubernetes/generate.py from prometheus/whm-exporter.rules.yml: change that
# file (thresholds included) and run the script again, rather than editing this one.
# `release`: kube-prometheus-stack's Prometheus only loads PrometheusRules labelled with its Helm
# release name; put yours, or the labels your Prometheus resource's ruleSelector asks for.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: whm-exporter
  labels: {app.kubernetes.io/name: whm-exporter, release: kube-prometheus-stack}
spec:
"""


def render() -> str:
    # Indenting every line keeps each block scalar's own indentation, so the YAML under `spec`
    # is the rule file's YAML.
    return HEADER + textwrap.indent(RULES.read_text(encoding="utf-8"), "  ")


if __name__ == "__main__":
    OUTPUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(HERE.parent.parent)}")
