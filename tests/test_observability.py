"""The Grafana dashboard and Prometheus rules only use metrics and labels services export."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from livecart_chat import metrics as chat_metrics  # noqa: F401  # registers the families
from livecart_commerce import flash_sale as commerce_flash_sale  # noqa: F401
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
    for module in ("livecart_relay", "livecart_chat", "livecart_commerce"):  # runtime + own
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


def rule(name: str) -> dict[str, Any]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "livecart-rules.yml").read_text())
    found: dict[str, Any] = next(r for r in rules["groups"][0]["rules"] if r["alert"] == name)
    return found


def firing(name: str, **labels: str) -> dict[str, Any]:
    """The alert ``name`` as promtool expects it to fire with ``labels``: its annotations
    rendered from the rule's templates."""
    found = rule(name)
    annotations = {}
    for key, text in found["annotations"].items():
        for label, value in labels.items():
            text = text.replace(f"{{{{ $labels.{label} }}}}", value)
        annotations[key] = text
    return {"exp_labels": {**found["labels"], **labels}, "exp_annotations": annotations}


def promtool_test(tmp_path: Path, unit_tests: list[dict[str, Any]]) -> None:
    """``promtool check rules`` and ``promtool test rules`` on the project's rules."""
    rules = DEPLOY / "prometheus" / "livecart-rules.yml"
    unit = {"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": unit_tests}
    (tmp_path / "unit.yml").write_text(yaml.safe_dump(unit))
    promtool = find_tool("promtool", "run `make promtool` (Debian's prometheus)")
    for args in (["check", "rules", str(rules)], ["test", "rules", "unit.yml"]):
        run = subprocess.run([promtool, *args], cwd=tmp_path, capture_output=True, text=True)
        assert run.returncode == 0, run.stdout + run.stderr


def test_a_dependency_down_pages_while_the_pods_stay_ready(tmp_path: Path) -> None:
    up = 'livecart_dependency_up{service="commerce",dependency="%s"}'
    retrying = 'livecart_background_retrying{service="commerce",task="outbox-relay"}'
    ready = 'livecart_service_ready{service="commerce"}'
    promtool_test(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": [
                    # Postgres away from minute 2 to minute 12; the bus fine all along.
                    {"series": up % "database", "values": "1 1 0x10 1x10"},
                    {"series": up % "bus", "values": "1x22"},
                    {"series": retrying, "values": "0 0 1x10 0x10"},
                    {"series": ready, "values": "1x22"},
                ],
                "alert_rule_test": [
                    {"alertname": "LivecartDependencyDown", "eval_time": "2m"},
                    {
                        "alertname": "LivecartDependencyDown",
                        "eval_time": "4m",
                        "exp_alerts": [
                            firing(
                                "LivecartDependencyDown", service="commerce", dependency="database"
                            )
                        ],
                    },
                    {
                        "alertname": "LivecartBackgroundLoopRetrying",
                        "eval_time": "8m",
                        "exp_alerts": [
                            firing(
                                "LivecartBackgroundLoopRetrying",
                                service="commerce",
                                task="outbox-relay",
                            )
                        ],
                    },
                    {"alertname": "LivecartServiceNotReady", "eval_time": "8m"},
                    {"alertname": "LivecartDependencyDown", "eval_time": "15m"},
                ],
            }
        ],
    )


def test_an_event_dead_lettered_raises_an_alert_at_once(tmp_path: Path) -> None:
    series = 'livecart_bus_dead_letters_total{backend="kafka",topic="%s",group="%s"}'
    promtool_test(
        tmp_path,
        [
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
                    {
                        "alertname": "LivecartEventsDeadLettered",
                        "eval_time": "5m",
                        "exp_alerts": [
                            firing(
                                "LivecartEventsDeadLettered",
                                group="chat-history",
                                topic="chat.messages",
                            )
                        ],
                    },
                    # A quarter of an hour with no new dead letter: it resolves by itself.
                    {"alertname": "LivecartEventsDeadLettered", "eval_time": "25m"},
                ],
            }
        ],
    )
