"""The Grafana dashboard and Prometheus rules only use metrics and labels services export."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import httpx
import yaml
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from livecart_chat import metrics as chat_metrics  # noqa: F401  # registers the families
from livecart_core import metrics as livecart_metrics  # noqa: F401
from livecart_core.localinfra.kafka import KafkaBroker
from livecart_core.localinfra.postgres import EmbeddedPostgres
from livecart_core.testing import ServiceProcess, find_tool
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


def test_an_event_dead_lettered_raises_an_alert_at_once(tmp_path: Path) -> None:
    rules = DEPLOY / "prometheus" / "livecart-rules.yml"
    series = 'livecart_bus_dead_letters_total{backend="kafka",topic="%s",group="%s"}'
    alert = {
        "alertname": "LivecartEventsDeadLettered",
        "eval_time": "5m",
        "exp_alerts": [
            {
                "exp_labels": {
                    "severity": "ticket",
                    "group": "chat-history",
                    "topic": "chat.messages",
                },
                "exp_annotations": {
                    "summary": "consumer group chat-history dead-lettered events of chat.messages",
                    "description": yaml.safe_load(rules.read_text())["groups"][0]["rules"][-1][
                        "annotations"
                    ]["description"].replace("{{ $labels.topic }}", "chat.messages"),
                },
            }
        ],
    }
    unit = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    # Born at 0 when the group subscribed: the first dead letter is a rise.
                    {
                        "series": series % ("chat.messages", "chat-history"),
                        "values": "0 0 0 1+0x30",
                    },
                    {"series": series % ("commerce.events", "chat-commerce"), "values": "0x30"},
                ],
                "alert_rule_test": [
                    {"alertname": "LivecartEventsDeadLettered", "eval_time": "2m"},
                    alert,
                    # A quarter of an hour with no new dead letter: it resolves by itself.
                    {"alertname": "LivecartEventsDeadLettered", "eval_time": "25m"},
                ],
            }
        ],
    }
    (tmp_path / "dead-letters.yml").write_text(yaml.safe_dump(unit))
    promtool = find_tool("promtool", "run `make promtool` (Debian's prometheus)")
    for args in (["check", "rules", str(rules)], ["test", "rules", "dead-letters.yml"]):
        run = subprocess.run([promtool, *args], cwd=tmp_path, capture_output=True, text=True)
        assert run.returncode == 0, run.stdout + run.stderr
