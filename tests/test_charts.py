"""The Helm charts as the real helm renders them: every service, its settings, probes, hooks."""

from __future__ import annotations

import importlib
import itertools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from livecart_core.testing import find_tool

ROOT = Path(__file__).resolve().parents[1]
CORE = "livecart"
EDGE = "livecart-edge"
REGIONS = ("sea", "na", "eu")
# Workspace members that are libraries or dev tools, not deployables.
NOT_DEPLOYED = {"core", "media", "allinone"}  # libraries and the dev runner
REGION_NODE_LABEL = "topology.kubernetes.io/region"

Manifest = dict[str, Any]


class Helm:
    """The real helm over a scratch copy of charts/, with its own config and cache homes."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.charts = workdir / "charts"
        shutil.copytree(ROOT / "charts", self.charts, ignore=shutil.ignore_patterns("*.tgz"))
        self.env = {
            **os.environ,
            **{f"HELM_{kind}_HOME": str(workdir / kind.lower()) for kind in ("CONFIG", "CACHE")},
            "HELM_DATA_HOME": str(workdir / "data"),
        }
        self._rendered: dict[tuple[str, ...], list[Manifest]] = {}
        for chart in (CORE, EDGE):
            self.run("dependency", "build", str(self.charts / chart))

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [self.binary, *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"helm {' '.join(args)} failed:\n{done.stderr}{done.stdout}"
        return done.stdout

    def values_file(self, region: str) -> Path:
        return self.charts / EDGE / f"values-{region}.yaml"

    def template(self, chart: str, *options: str) -> list[Manifest]:
        """The chart's objects (hooks included) for release name ``chart``."""
        key = (chart, *options)
        if key not in self._rendered:
            out = self.run("template", chart, str(self.charts / chart), *options)
            self._rendered[key] = [doc for doc in yaml.safe_load_all(out) if doc]
        return self._rendered[key]


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(find_tool("helm", "run `make tools`"), tmp_path_factory.mktemp("helm"))


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def container(workload: Manifest) -> Manifest:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, workload["metadata"]["name"]
    return containers[0]  # type: ignore[no-any-return]


def env(workload: Manifest) -> dict[str, Manifest]:
    return {var["name"]: var for var in container(workload).get("env", [])}


def module(workload: Manifest) -> str:
    return container(workload)["args"][0]  # type: ignore[no-any-return]


def deployed_modules(manifests: list[Manifest]) -> set[str]:
    return {module(d) for d in of_kind(manifests, "Deployment")}


def service_packages() -> list[str]:
    services = ROOT / "services"
    return sorted(
        p.name
        for p in services.iterdir()
        if (p / "pyproject.toml").is_file() and p.name not in NOT_DEPLOYED
    )


RENDERINGS = [
    pytest.param(CORE, (), id="core"),
    pytest.param(EDGE, (), id="edge"),
    *(pytest.param(EDGE, (region,), id=f"edge-{region}") for region in REGIONS),
]


def render(helm: Helm, chart: str, regions: tuple[str, ...]) -> list[Manifest]:
    return helm.template(chart, *(f"--values={helm.values_file(r)}" for r in regions))


def test_lint_passes_for_both_charts_and_every_region(helm: Helm) -> None:
    helm.run("lint", "--strict", str(helm.charts / CORE), str(helm.charts / EDGE))
    for region in REGIONS:
        helm.run("lint", "--strict", str(helm.charts / EDGE), "-f", str(helm.values_file(region)))


@pytest.mark.parametrize(("chart", "regions"), RENDERINGS)
def test_every_deployment_runs_its_service_with_probes_and_kafka(
    helm: Helm, chart: str, regions: tuple[str, ...]
) -> None:
    manifests = render(helm, chart, regions)
    deployments = of_kind(manifests, "Deployment")
    services = {s["metadata"]["name"]: s for s in of_kind(manifests, "Service")}
    assert deployments
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        main = container(deployment)
        component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        assert main["args"] == [f"livecart_{component}"], name
        assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}, name
        assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}, name
        ports = {p["name"]: p["containerPort"] for p in main["ports"]}
        variables = env(deployment)
        assert variables["LIVECART_KAFKA_BOOTSTRAP"]["value"], name
        assert variables["LIVECART_HTTP_PORT"]["value"] == str(ports["http"]), name
        assert variables["LIVECART_GRPC_PORT"]["value"] == str(ports["grpc"]), name
        assert variables["LIVECART_LOG_FORMAT"]["value"] == "json", name
        # SIGTERM: unready while it keeps serving, then the grace period covers the stop.
        drain = float(variables["LIVECART_DRAIN_S"]["value"])
        assert drain > 0, name
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > drain + 10, name
        secret = {"name": "livecart-auth", "key": "secret"}  # one signing secret everywhere
        assert variables["LIVECART_AUTH_SECRET"]["valueFrom"]["secretKeyRef"] == secret, name
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        assert annotations["prometheus.io/path"] == "/metrics", name
        assert annotations["prometheus.io/port"] == str(ports["http"]), name
        service_ports = {p["name"]: p["targetPort"] for p in services[name]["spec"]["ports"]}
        if component == "chat":  # the viewers' WebSocket, and the setting that names its port
            assert variables["LIVECART_WS_PORT"]["value"] == str(ports["ws"]), name
            assert service_ports == {"http": "http", "grpc": "grpc", "ws": "ws"}, name
        else:
            assert service_ports == {"http": "http", "grpc": "grpc"}, name


def test_core_services_read_the_database_url_from_the_chart_secret(helm: Helm) -> None:
    manifests = helm.template(CORE)
    (secret,) = of_kind(manifests, "Secret")
    assert "pre-install" in secret["metadata"]["annotations"]["helm.sh/hook"]
    expected = {"name": secret["metadata"]["name"], "key": "url"}
    assert set(secret["stringData"]) == {"url"}
    for workload in of_kind(manifests, "Deployment") + of_kind(manifests, "Job"):
        url = env(workload)["LIVECART_DATABASE_URL"]
        assert url == {"name": "LIVECART_DATABASE_URL", "valueFrom": {"secretKeyRef": expected}}


def test_core_chart_can_use_an_existing_secret(helm: Helm) -> None:
    manifests = helm.template(
        CORE, "--set", "database.existingSecret=pg", "--set", "database.existingSecretKey=dsn"
    )
    assert not of_kind(manifests, "Secret")
    for workload in of_kind(manifests, "Deployment") + of_kind(manifests, "Job"):
        ref = env(workload)["LIVECART_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "pg", "key": "dsn"}


@pytest.mark.parametrize("regions", [(), *((r,) for r in REGIONS)])
def test_edge_has_no_database(helm: Helm, regions: tuple[str, ...]) -> None:
    manifests = render(helm, EDGE, regions)
    assert not of_kind(manifests, "Job")
    assert not of_kind(manifests, "Secret")
    for deployment in of_kind(manifests, "Deployment"):
        assert "LIVECART_DATABASE_URL" not in env(deployment)


def test_a_migration_hook_job_per_database_service(helm: Helm) -> None:
    manifests = helm.template(CORE)
    jobs = of_kind(manifests, "Job")
    for job in jobs:
        hooks = job["metadata"]["annotations"]["helm.sh/hook"].split(",")
        assert sorted(hooks) == ["pre-install", "pre-upgrade"]
        assert container(job)["args"][1:] == ["migrate"]
    assert {module(job) for job in jobs} == deployed_modules(manifests)
    assert len(jobs) == 5


def test_a_disabled_service_is_not_rendered(helm: Helm) -> None:
    manifests = helm.template(CORE, "--set", "services.assistant.enabled=false")
    names = {m["metadata"]["name"] for m in manifests}
    assert not {n for n in names if "assistant" in n}
    assert "livecart_chat" in deployed_modules(manifests)


@pytest.mark.parametrize("region", REGIONS)
def test_region_values_pin_the_edge_to_its_region(helm: Helm, region: str) -> None:
    values = yaml.safe_load(helm.values_file(region).read_text())
    assert values["region"] == region
    assert values["nodeSelector"][REGION_NODE_LABEL]
    deployments = of_kind(render(helm, EDGE, (region,)), "Deployment")
    for deployment in deployments:
        pod = deployment["spec"]["template"]
        assert pod["spec"]["nodeSelector"] == values["nodeSelector"]
        assert pod["metadata"]["labels"]["livecart.io/region"] == region
        assert deployment["metadata"]["name"].startswith(f"{EDGE}-")
    replicas = {module(d): d["spec"]["replicas"] for d in deployments}
    assert replicas == {f"livecart_{n}": s["replicas"] for n, s in values["services"].items()}


def test_every_service_is_deployed_by_exactly_one_chart(helm: Helm) -> None:
    charts = {chart: deployed_modules(helm.template(chart)) for chart in (CORE, EDGE)}
    for name in service_packages():
        package = f"livecart_{name}"
        holders = [chart for chart, modules in charts.items() if package in modules]
        assert len(holders) == 1, f"{package} is deployed by {holders or 'no chart'}"
        # Only the core chart gives a service its database and migrations.
        uses_database = importlib.import_module(f"{package}.app").SERVICE.uses_database
        assert holders == [CORE if uses_database else EDGE], package


def test_ingest_pipes_to_every_relay_pod_on_the_pods_address(helm: Helm) -> None:
    deployments = {module(d): d for d in of_kind(render(helm, EDGE, ("sea",)), "Deployment")}

    def env(name: str) -> dict[str, object]:
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}

    assert env("livecart_ingest")["LIVECART_RELAY_GRPC_ADDRESS"] == f"{EDGE}-relay-pods:50051"
    assert env("livecart_relay")["LIVECART_PIPE_HOST"] == {
        "fieldRef": {"fieldPath": "status.podIP"}
    }
    assert env("livecart_relay")["LIVECART_WORKERS"] == "4"
    assert "hostNetwork" not in deployments["livecart_relay"]["spec"]["template"]["spec"]
    services = {s["metadata"]["name"]: s for s in of_kind(render(helm, EDGE, ("sea",)), "Service")}
    assert services[f"{EDGE}-relay-pods"]["spec"]["clusterIP"] == "None"
    assert services[f"{EDGE}-relay"]["spec"]["sessionAffinity"] == "ClientIP"


def test_edge_media_binds_in_configured_udp_port_ranges(helm: Helm) -> None:
    deployments = {module(d): d for d in of_kind(render(helm, EDGE, ("sea",)), "Deployment")}

    def ports(name: str, setting: str) -> tuple[int, int]:
        values = env(deployments[name])
        low, high = values[f"{setting}_MIN"]["value"], values[f"{setting}_MAX"]["value"]
        return int(low), int(high)

    ingest_ice = ports("livecart_ingest", "LIVECART_ICE_PORT")
    relay_ice = ports("livecart_relay", "LIVECART_ICE_PORT")
    relay_pipe = ports("livecart_relay", "LIVECART_PIPE_PORT")
    ranges = sorted([ingest_ice, relay_ice, relay_pipe])
    assert all(low <= high for low, high in ranges)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(ranges)), ranges
    workers = int(env(deployments["livecart_relay"])["LIVECART_WORKERS"]["value"])
    # Each worker's slice holds its LIVECART_MAX_SUBSCRIBERS (500 by default).
    assert (relay_ice[1] - relay_ice[0] + 1) // workers >= 500
    assert "LIVECART_PIPE_PORT_MIN" not in env(deployments["livecart_ingest"])
