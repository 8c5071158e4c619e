"""The monitoring that Docker Compose deploys, checked without a container engine: both
Prometheus configs through `promtool check config`, and the Grafana dashboard: valid,
provisioned, and querying only metrics the code defines."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from penguin12_devstack import observability, stack

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS_FILE = ROOT / "prometheus.yml"
DASHBOARD_FILE = ROOT / "grafana" / "dashboards" / "penguin12.json"
METRICS_FILE = ROOT / "libs" / "penguin12" / "src" / "penguin12" / "metrics.py"
DASHBOARD_METRICS = (
    "penguin12_http_requests_total",
    "penguin12_http_request_duration_seconds",
    "penguin12_jobs_submitted_total",
    "penguin12_messages_total",
    "penguin12_processing_seconds",
    "penguin12_delivery_seconds",
    "penguin12_batch_size",
    "penguin12_consumer_lag",
    "penguin12_embedding_cache_total",
    "penguin12_backbone_images_total",
    "penguin12_jobs_finished_total",
    "penguin12_job_duration_seconds",
    "penguin12_model_info",
)


def _promtool() -> str:
    observability.ensure_prometheus()  # Debian's package brings promtool with it
    found = shutil.which("promtool") or "/usr/bin/promtool"
    assert Path(found).exists(), "promtool not found"
    return found


def test_prometheus_configs_pass_promtool(tmp_path: Path) -> None:
    local = observability.local_prometheus_config(
        {**stack.scrape_targets(stack.Ports(), 2), "prometheus": ["127.0.0.1:9090"]},
        scrape_interval="1s",
    )
    local_file = observability.write_prometheus_config(tmp_path / "local.yml", local)
    for path in (PROMETHEUS_FILE, local_file):
        result = subprocess.run(
            [_promtool(), "check", "config", "--syntax-only", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    # The local config is the Compose one with the same jobs, paths and intervals.
    compose_jobs = [
        j["job_name"] for j in yaml.safe_load(PROMETHEUS_FILE.read_text())["scrape_configs"]
    ]
    assert [j["job_name"] for j in local["scrape_configs"]] == compose_jobs
    with pytest.raises(ValueError, match="not in"):
        observability.local_prometheus_config({"no_such_job": ["127.0.0.1:1"]})


# ---------------------------------------------------------------------------------- Grafana

_PROMQL_WORDS = {
    # aggregation operators and their modifiers
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "group", "count_values", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "and", "or", "unless", "offset",
    # functions used on dashboards
    "rate", "irate", "increase", "delta", "histogram_quantile", "sum_over_time",
    "avg_over_time", "max_over_time", "clamp_min", "clamp_max", "abs", "vector", "scalar",
    "label_replace", "time", "sort", "sort_desc", "absent", "round",
}  # fmt: skip


def _defined_metrics() -> set[str]:
    """Metric names declared in penguin12/metrics.py, with the series a histogram exposes."""
    text = METRICS_FILE.read_text()
    names: set[str] = set()
    for kind, name in re.findall(r"\b(Counter|Gauge|Histogram|Summary)\(\s*\"(\w+)\"", text):
        names.add(name)
        if kind == "Counter" and not name.endswith("_total"):
            names.add(f"{name}_total")
        if kind in ("Histogram", "Summary"):
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def _metric_names(expr: str) -> set[str]:
    """Identifiers of a PromQL expression that are metric names (not functions, labels...)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    idents = set(re.findall(r"(?<![\w.$])[a-zA-Z_:][\w:]*", text))
    return {i for i in idents if i not in _PROMQL_WORDS and not re.fullmatch(r"e\d*|inf|nan", i)}


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query on the dashboard."""
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def test_dashboard_is_valid_and_provisioned(compose: dict[str, Any]) -> None:
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    datasources = yaml.safe_load(
        (ROOT / "grafana" / "provisioning" / "datasources" / "penguin12.yml").read_text()
    )["datasources"]
    prometheus = next(d for d in datasources if d["type"] == "prometheus")
    assert prometheus["url"] == "http://prometheus:9090" and prometheus["isDefault"]
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": prometheus["uid"]}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == prometheus["uid"]
            assert target["expr"].strip()
    providers = yaml.safe_load(
        (ROOT / "grafana" / "provisioning" / "dashboards" / "penguin12.yml").read_text()
    )["providers"]
    grafana = compose["services"]["grafana"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"] if v.startswith("./")}
    assert mounted["/etc/grafana/provisioning"] == "./grafana/provisioning"
    assert mounted[providers[0]["options"]["path"]] == "./grafana/dashboards"
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith(
        "${GRAFANA_ADMIN_PASSWORD:?"
    )


def test_dashboard_queries_only_metrics_the_code_defines() -> None:
    defined = _defined_metrics()
    assert "penguin12_http_request_duration_seconds_bucket" in defined
    used: set[str] = set()
    for title, expr in dashboard_queries():
        names = _metric_names(expr)
        assert names, f"{title}: no metric in {expr!r}"
        assert names <= defined, f"{title}: {sorted(names - defined)} not in metrics.py"
        used |= names
    # Every metric issue #4 asks a panel for is on the dashboard.
    for name in DASHBOARD_METRICS:
        assert name in defined or f"{name}_bucket" in defined, f"{name} is not in metrics.py"
        assert any(u == name or u.startswith(f"{name}_") for u in used), f"{name} has no panel"
