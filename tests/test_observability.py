"""The Grafana dashboard and Prometheus rules only use metrics and labels services export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from livecart_chat import metrics as chat_metrics  # noqa: F401  # registers the families
from livecart_core import metrics as livecart_metrics  # noqa: F401
from livecart_core.localinfra.kafka import KafkaBroker
from livecart_core.localinfra.postgres import EmbeddedPostgres
from livecart_core.testing import ServiceProcess
from livecart_relay import metrics as relay_metrics  # noqa: F401

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
METRIC = re.compile(r"\b(livecart_[a-z_]+?)(?:_bucket|_count|_sum)?\b(?!_)")
GROUPING = re.compile(r"\bby \(([^)]*)\)[^,]*?\(?\s*(?:rate\()?(livecart_[a-z_]+)")


def expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "livecart-overview.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    rules = (DEPLOY / "prometheus" / "livecart-rules.yml").read_text()
    exprs += re.findall(r"expr: \|?\s*\n?((?:.+\n?)+?)(?=\s+for:)", rules)
    return exprs


def labels_by_family() -> dict[str, set[str]]:
    names: dict[str, set[str]] = {}
    for collector in list(REGISTRY._collector_to_names):
        labelnames = getattr(collector, "_labelnames", None)
        if labelnames is None:
            continue
        for family in collector.describe():
            names[family.name] = set(labelnames) | {"le"}
    return names


def test_dashboard_is_well_formed() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "livecart-overview.json").read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert all(panel["targets"] for panel in dashboard["panels"])


def test_every_metric_and_label_queried_is_exported(
    kafka_broker: KafkaBroker, postgres: EmbeddedPostgres
) -> None:
    env = {
        "LIVECART_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
        "LIVECART_DATABASE_URL": postgres.url,
        "LIVECART_MIGRATE_ON_START": "true",
    }
    exported: set[str] = set()
    for module in ("livecart_relay", "livecart_chat"):  # the runtime's metrics, and chat's own
        with ServiceProcess(module, env) as s:
            httpx.get(f"{s.url}/docs", timeout=5)
            text = httpx.get(f"{s.url}/metrics").text
            exported |= {family.name for family in text_string_to_metric_families(text)}
    families = labels_by_family()
    exprs = expressions()
    assert len(exprs) >= 10
    for expr in exprs:
        used = {m.removesuffix("_total") for m in METRIC.findall(expr)}
        assert used, expr
        for name in used:
            assert name in exported, f"{name} (in {expr!r}) is not exported"
        for grouping, metric in GROUPING.findall(expr):
            family = metric.removesuffix("_bucket").removesuffix("_total")
            wanted = {label.strip() for label in grouping.split(",")}
            assert wanted <= families[family], f"{wanted} not all labels of {family}"
