"""What the shipped Prometheus rules and Grafana dashboard use, read from the files themselves."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

MONITORING = Path(__file__).parents[1] / "monitoring"
RULES = MONITORING / "prometheus/thinpool.rules.yml"
RULE_TESTS = MONITORING / "prometheus/thinpool.rules.test.yml"
DASHBOARD = MONITORING / "grafana/thinpool-dashboard.json"
_METRIC = re.compile(r"\bthinpool_[a-z_]+\b")


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    dashboard = [target["expr"] for panel in panels for target in panel.get("targets", [])]
    return [str(rule["expr"]) for rule in rules()] + dashboard


def thinpool_metric_names() -> set[str]:
    """Every thinpool_* metric the rules and the dashboard read (recording rules are thinpool:...)."""
    return {name for expr in expressions() for name in _METRIC.findall(expr)}
