"""The Helm chart in deploy/helm/floworch, as an operator relies on it: it renders for the
default values and for a production-like values file, every object is valid Kubernetes (the
schemas of a pinned Kubernetes version, bundled by kubernetes-validate), the pieces are wired to
each other (Services to pods, the autoscaler to the worker fleet and its task queues, workers to
Temporal and the database Secret), and bad values fail at `helm template` with a message naming
the value. No cluster: `helm template` and `helm lint` from the helm-binary package. Then the
rendered processes themselves (the worker fleet's and the setup Job's command lines and
variables) run against this machine's real Temporal dev server and complete a flow.

Temporal's chart is a dependency that `helm dependency update` fetches from its repository, which
this machine cannot reach; the renders use a copy of the chart without that dependency (so the
Temporal objects are absent, everything of ours is as it would be installed), and a test checks
the real Chart.yaml declares it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pandas as pd
import pytest
import yaml
from google.protobuf.duration_pb2 import Duration
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest

from conftest import finished, flow_doc, wait_until
from floworch_ext.prometheus import METRICS_PATH
from floworch_server import cli, metrics, temporal, worker
from floworch_server.service import FlowService
from floworch_server.settings import ENV_PREFIX, Settings

CHART = Path(__file__).resolve().parent.parent / "deploy" / "helm" / "floworch"
PRODUCTION = CHART / "values-production.yaml"
HELM = str(Path(sys.executable).parent / "helm")
KUBE_VERSION = "1.33.0"  # the cluster version the objects are checked against
RELEASE, NAMESPACE = "floworch", "team-a"
# Kinds whose schemas come with their operators (KEDA, the Prometheus Operator), not with
# Kubernetes: the tests below check what matters in them field by field.
CUSTOM_KINDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor"}


@pytest.fixture(scope="module")
def chart(tmp_path_factory) -> Path:
    """The chart without its Temporal dependency (which cannot be fetched here)."""
    copy = tmp_path_factory.mktemp("chart") / "floworch"
    shutil.copytree(CHART, copy, ignore=shutil.ignore_patterns("charts", "Chart.lock"))
    meta = yaml.safe_load((copy / "Chart.yaml").read_text())
    assert [d["name"] for d in meta.pop("dependencies")] == ["temporal"]
    (copy / "Chart.yaml").write_text(yaml.safe_dump(meta))
    return copy


def helm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([HELM, *args], capture_output=True, text=True, timeout=120)


def template(chart: Path, *values: str | Path, **sets: Any) -> subprocess.CompletedProcess:
    args = ["template", RELEASE, str(chart), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION]
    for file in values:
        args += ["-f", str(file)]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    return helm(*args)


def render(chart: Path, *values: str | Path, **sets: Any) -> list[dict]:
    done = template(chart, *values, **sets)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def objects(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in objects(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
    return found[0]


def pod_templates(docs: list[dict]) -> list[tuple[dict, dict]]:
    """(workload, pod template) of every Deployment and Job."""
    return [(d, d["spec"]["template"]) for d in docs if d["kind"] in ("Deployment", "Job")]


def containers_of(pod: dict) -> list[dict]:
    """Init containers (in order), then the containers of a pod template."""
    return [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]


def workers(docs: list[dict]) -> list[dict]:
    return [
        d for d in objects(docs, "Deployment") if d["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
    ]


def container_env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


# What the Secret holds in these tests (the chart only names its keys).
SECRET = {
    "database-url": "postgresql+psycopg://floworch_app:pw@db.internal/floworch",
    "database-read-url": "postgresql+psycopg://floworch_app:pw@db-replica.internal/floworch",
    "redis-url": "redis://redis.internal:6379/0",
}


def pod_environment(docs: list[dict], container: dict) -> dict[str, str]:
    """The variables a container starts with: its ConfigMaps', then its own env, Secret keys
    taken from SECRET (a key it lacks must be optional, else the pod would not start)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(one(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        ref = var["valueFrom"]["secretKeyRef"]
        if ref["key"] in SECRET:
            env[var["name"]] = SECRET[ref["key"]]
        else:
            assert ref.get("optional"), f"{var['name']} needs key {ref['key']} in Secret {ref['name']}"
    return env


VARIANTS = {"default values": (), "production values": (PRODUCTION,)}


@pytest.fixture(scope="module", params=list(VARIANTS))
def rendered(request, chart) -> list[dict]:
    return render(chart, *VARIANTS[request.param])


@pytest.fixture(scope="module")
def production(chart) -> list[dict]:
    return render(chart, PRODUCTION)


def test_chart_declares_temporal_s_official_chart_as_a_pinned_optional_dependency():
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    (temporal,) = meta["dependencies"]
    assert temporal["name"] == "temporal"
    assert temporal["repository"] == "https://go.temporal.io/helm-charts"
    assert temporal["condition"] == "temporal.enabled"
    parts = temporal["version"].split(".")  # pinned: an exact version, no range
    assert len(parts) == 3 and all(p.isdigit() for p in parts), temporal["version"]


def test_helm_lint_passes(chart):
    for values in ([], ["-f", str(PRODUCTION)]):
        linted = helm("lint", "--strict", str(chart), "--kube-version", KUBE_VERSION, *values)
        assert linted.returncode == 0, linted.stdout + linted.stderr
    # The real chart too: the only complaint is the dependency this machine cannot fetch.
    real = helm("lint", str(CHART), "--kube-version", KUBE_VERSION)
    assert real.returncode == 0, real.stdout + real.stderr
    warnings = [line for line in real.stdout.splitlines() if line.startswith("[WARNING]")]
    assert all("missing these dependencies: temporal" in w for w in warnings), warnings


def test_every_object_is_valid_for_the_pinned_kubernetes_version(rendered):
    unchecked = set()
    for doc in rendered:
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            unchecked.add(doc["kind"])
        except kubernetes_validate.ValidationError as err:
            path = ".".join(str(p) for p in err.path)
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {path}: {err.message}")
    assert unchecked <= CUSTOM_KINDS, f"no schema for {unchecked - CUSTOM_KINDS}: a typo in an apiVersion or kind?"


def test_services_select_the_pods_they_front_on_ports_those_pods_have(rendered):
    services = objects(rendered, "Service")
    assert services
    for service in services:
        selector = service["spec"]["selector"]
        fronted = [(w, t) for w, t in pod_templates(rendered) if selector.items() <= t["metadata"]["labels"].items()]
        assert [w["metadata"]["name"] for w, _ in fronted] == [f"{RELEASE}-jupyter"], service["metadata"]["name"]
        ports = {p["name"] for c in fronted[0][1]["spec"]["containers"] for p in c.get("ports", [])}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports


def test_every_process_reaches_temporal_and_takes_the_database_urls_from_the_secret(rendered):
    production = any(w["metadata"]["name"].endswith("2026-12-01") for w in workers(rendered))
    secret = "floworch-secrets" if production else RELEASE
    # The Temporal cluster of the values, or the frontend of the Temporal chart of this release.
    address = (
        "temporal-frontend.temporal.svc.cluster.local:7233"
        if production
        else f"{RELEASE}-temporal-frontend.{NAMESPACE}.svc:7233"
    )
    containers = [(c, pod["spec"]) for _, pod in pod_templates(rendered) for c in containers_of(pod)]
    # The fleets, the Jupyter server, and the setup Job's two steps.
    assert len(containers) == len(workers(rendered)) + 3
    for container, pod in containers:
        settings = Settings.from_env(environ=pod_environment(rendered, container))
        assert settings.temporal_address == address and not settings.embedded
        assert settings.temporal_namespace == ("team-a" if production else "default")
        assert (settings.database_url, settings.database_read_url, settings.redis_url) == (
            SECRET["database-url"],
            SECRET["database-read-url"],
            SECRET["redis-url"],
        )
        database = container_env(container)["FLOWORCH_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert (database["name"], database["key"], database.get("optional", False)) == (secret, "database-url", False)
        assert settings.data_dir == "/data" and "/data" in {m["mountPath"] for m in container["volumeMounts"]}
        if production:  # mTLS with the client certificate mounted from its Secret
            assert settings.temporal_tls
            volumes = {v["name"]: v for v in pod["volumes"]}
            for path in (settings.temporal_tls_cert, settings.temporal_tls_key, settings.temporal_tls_ca):
                mount = next(m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
                assert volumes[mount["name"]]["secret"]["secretName"] == "floworch-temporal-client"


def test_every_floworch_variable_the_chart_sets_is_a_setting(chart):
    docs = render(
        chart, PRODUCTION, **{"keyFile.secretName": "floworch-keys", "settings.otelEndpoint": "http://collector:4318"}
    )
    known = {ENV_PREFIX + name.upper() for name in Settings.__dataclass_fields__}
    names = set(one(docs, "ConfigMap")["data"])
    for _, pod in pod_templates(docs):
        for container in containers_of(pod):
            names |= set(container_env(container))
    assert {n for n in names if n.startswith(ENV_PREFIX)} - known == set(), "variables no setting reads (a typo?)"


def test_worker_commands_are_what_the_floworch_cli_accepts(production, monkeypatch):
    for name in [n for n in os.environ if n.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    fleets = {}
    for fleet in workers(production):
        (container,) = fleet["spec"]["template"]["spec"]["containers"]
        args = container["args"]
        assert args[0] == "floworch" and cli._parser().parse_known_args(args[1:])[0].group == "worker"
        with monkeypatch.context() as env:
            for name, value in pod_environment(production, container).items():
                env.setenv(name, value)
            fleets[fleet["metadata"]["name"]] = worker.parse_command_line(args[2:], prog="floworch worker")
    assert set(fleets) == {"floworch-worker-2026-12-01", "floworch-worker-2026-11-20"}
    settings, queues = fleets["floworch-worker-2026-12-01"]
    assert queues == ["floworch", "floworch-ai"]
    assert (settings.worker_concurrency, settings.worker_deployment, settings.worker_build_id) == (
        50,
        "floworch",
        "2026-12-01",
    )
    assert fleets["floworch-worker-2026-11-20"][0].worker_build_id == "2026-11-20"
    # After the upgrade a Job makes the new fleet current, with the CLI's own command, once the
    # search attributes are there.
    (job,) = objects(production, "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    assert [c["name"] for c in job["spec"]["template"]["spec"]["initContainers"]] == ["search-attributes"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "floworch"
    args = cli._parser().parse_args(container["args"][1:])
    assert (args.run, args.build_id) == (cli.deployment_set_current, "2026-12-01")


def test_the_jupyter_server_command_is_what_jupyterlab_accepts(rendered):
    from jupyterlab.labapp import LabApp

    (container,) = one(rendered, "Deployment", f"{RELEASE}-jupyter")["spec"]["template"]["spec"]["containers"]
    assert container["args"][:2] == ["jupyter", "lab"]
    app = LabApp()
    app.parse_command_line(container["args"][2:])  # exits on an option JupyterLab does not know
    server = app.config.ServerApp
    assert app.config.LabApp.collaborative is True
    assert server.ip == "0.0.0.0" and server.trust_xheaders is True
    assert server.port == container["ports"][0]["containerPort"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert server.root_dir == mounts["workspace"]  # the notebooks and .flow files persist
    assert container["readinessProbe"]["httpGet"]["path"] == server.base_url + "api"


def test_two_worker_fleets_coexist_during_a_blue_green_switch(production):
    fleets = {w["metadata"]["name"]: w for w in workers(production)}
    new, old = fleets["floworch-worker-2026-12-01"], fleets["floworch-worker-2026-11-20"]
    # Each Deployment owns only its own pods.
    for mine, other in ((new, old), (old, new)):
        selector = mine["spec"]["selector"]["matchLabels"]
        assert selector.items() <= mine["spec"]["template"]["metadata"]["labels"].items()
        assert not selector.items() <= other["spec"]["template"]["metadata"]["labels"].items()
    # The old fleet keeps its image and a fixed size; the autoscaler owns the new fleet's size.
    assert old["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/floworch:2026-11-20"
    assert new["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/floworch:2026-12-01"
    assert old["spec"]["replicas"] == 1 and "replicas" not in new["spec"]
    # One disruption budget covers both fleets.
    budget = one(production, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]
    for fleet in (new, old):
        assert budget.items() <= fleet["spec"]["template"]["metadata"]["labels"].items()


def test_the_old_fleet_keeps_its_pods_when_the_next_one_becomes_current(chart, production):
    # The release before the switch: 2026-11-20 was the current fleet.
    before = render(
        chart, PRODUCTION, **{"image.tag": "2026-11-20", "worker.buildId": "2026-11-20", "worker.draining": "null"}
    )
    (was,) = workers(before)
    now = one(production, "Deployment", was["metadata"]["name"])
    # Same selector and the same pod template: Kubernetes replaces none of its pods, and the
    # runs pinned to it go on; only the autoscaler lets go of its size.
    assert now["spec"]["selector"] == was["spec"]["selector"]
    assert now["spec"]["template"] == was["spec"]["template"]
    assert "replicas" not in was["spec"] and now["spec"]["replicas"] == 1
    assert one(before, "ScaledObject")["spec"]["scaleTargetRef"]["name"] == was["metadata"]["name"]


def test_keda_scales_the_current_fleet_on_its_task_queues(production):
    scaled = one(production, "ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    target = scaled["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "floworch-worker-2026-12-01")
    assert one(production, "Deployment", target["name"])  # it exists
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (2, 30)
    triggers = scaled["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"temporal"}
    assert [t["metadata"]["taskQueue"] for t in triggers] == ["floworch", "floworch-ai"]
    for trigger in triggers:
        meta = trigger["metadata"]
        assert meta["endpoint"] == "temporal-frontend.temporal.svc.cluster.local:7233"
        assert meta["namespace"] == "team-a"
        assert meta["targetQueueSize"] == "20"
        assert (meta["workerDeploymentName"], meta["workerDeploymentBuildId"]) == ("floworch", "2026-12-01")
        assert all(isinstance(v, str) for v in meta.values())  # KEDA's metadata is a map of strings
        # mTLS with the workers' own client certificate.
        auth = one(production, "TriggerAuthentication", trigger["authenticationRef"]["name"])
        refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
        assert refs == {
            p: ("floworch-temporal-client", k) for p, k in [("cert", "tls.crt"), ("key", "tls.key"), ("ca", "ca.crt")]
        }


def test_the_hpa_alternative_scales_on_the_exported_backlog_gauge(chart):
    docs = render(chart, PRODUCTION, **{"autoscaling.keda.enabled": "false", "autoscaling.hpa.enabled": "true"})
    assert not objects(docs, "ScaledObject")
    hpa = one(docs, "HorizontalPodAutoscaler")
    kubernetes_validate.validate(hpa, KUBE_VERSION, strict=True)
    assert hpa["spec"]["scaleTargetRef"]["name"] == "floworch-worker-2026-12-01"
    # The gauge and its label as the metrics route exports them.
    queues = pd.DataFrame([["floworch", "workflow", 7, 1.0, 0.0, 0.0, 1, True]], columns=metrics.QUEUE_COLUMNS)
    exported = {f.name: f for f in metrics.live_families(queues, None)}
    gauge = exported["floworch_task_queue_backlog"]
    for entry in hpa["spec"]["metrics"]:
        metric = entry["external"]["metric"]
        assert metric["name"] == gauge.name
        assert set(metric["selector"]["matchLabels"]) <= set(gauge.samples[0][1])
    assert [m["external"]["metric"]["selector"]["matchLabels"]["task_queue"] for m in hpa["spec"]["metrics"]] == [
        "floworch",
        "floworch-ai",
    ]


def test_prometheus_scrapes_the_metrics_route_with_the_jupyter_token(production):
    monitor = one(production, "ServiceMonitor")
    service = one(production, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == METRICS_PATH
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["authorization"] == {
        "type": "token",
        "credentials": {"name": "floworch-secrets", "key": "jupyter-token"},
    }


def test_the_ingress_serves_the_jupyter_server_over_tls(rendered):
    ingress = one(rendered, "Ingress")
    (rule,) = ingress["spec"]["rules"]
    (tls,) = ingress["spec"]["tls"]
    assert rule["host"] in tls["hosts"] and tls["secretName"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    service = one(rendered, "Service", backend["name"])
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


def test_cert_manager_fills_the_certificate_secret_when_asked(production):
    ingress = one(production, "Ingress")
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt-prod"
    assert ingress["spec"]["tls"] == [{"hosts": ["flows.team-a.example.com"], "secretName": "flows-team-a-tls"}]


def test_a_stopping_worker_is_given_longer_than_its_drain(rendered):
    for fleet in workers(rendered):
        assert fleet["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > worker.HARD_EXIT_AFTER


def test_pods_run_as_non_root_with_limits_and_probes_where_there_is_a_server(rendered):
    for _, pod in pod_templates(rendered):
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        # Service links would define FLOWORCH_TEMPORAL_PORT=tcp://... for a Service named floworch-temporal.
        assert spec["enableServiceLinks"] is False
        for container in containers_of(pod):
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert {"/data", "/tmp"} <= mounts  # the shared data directory; a writable /tmp
        for volume in spec["volumes"]:
            if "secret" in volume:  # its files belong to root: the pod's group (fsGroup) must read them
                assert volume["secret"]["defaultMode"] & 0o040, volume["name"]
    (jupyter,) = one(rendered, "Deployment", f"{RELEASE}-jupyter")["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert jupyter[probe]["httpGet"] == {"path": "/api", "port": "http"}


def test_a_secret_made_by_the_chart_holds_only_keys_it_reads(chart):
    docs = render(
        chart, **{"secret.create": "true", "secret.values.database-url": "postgresql+psycopg://app:pw@db/floworch"}
    )
    secret = one(docs, "Secret")
    kubernetes_validate.validate(secret, KUBE_VERSION, strict=True)
    assert secret["stringData"] == {"database-url": "postgresql+psycopg://app:pw@db/floworch"}
    bad = template(
        chart, **{"secret.create": "true", "secret.values.database-url": "x", "secret.values.databse-read-url": "y"}
    )
    assert bad.returncode != 0 and "secret.values.databse-read-url is not a key this chart reads" in bad.stderr


async def test_the_setup_job_registers_the_search_attributes_runs_are_started_with(chart, supervisor, tmp_path):
    """Its first step, run as the pod would run it, against a fresh namespace of a real Temporal."""
    docs = render(chart)
    (job,) = objects(docs, "Job")
    (step,) = job["spec"]["template"]["spec"]["initContainers"]
    assert step["args"] == ["floworch", "temporal", "setup"]
    namespace = f"deploy-{os.getpid()}"
    client = await temporal.connect(Settings.from_env(), traced=False)
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400))
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env |= pod_environment(docs, step)
    # This machine's Temporal and a scratch data directory instead of the cluster's.
    env |= {"FLOWORCH_TEMPORAL_ADDRESS": supervisor.address, "FLOWORCH_TEMPORAL_NAMESPACE": namespace}
    env |= {"FLOWORCH_DATA_DIR": str(tmp_path), "FLOWORCH_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}"}
    env.pop("FLOWORCH_DATABASE_READ_URL")
    command = [str(Path(sys.executable).parent / "floworch"), *step["args"][1:]]  # this venv's `floworch`
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"namespace {namespace}: search attributes added: " in done.stdout
    assert set(await temporal.list_search_attributes(client, namespace)) >= set(temporal.SEARCH_ATTRIBUTES)
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "none, all there" in again.stdout, again.stderr  # every upgrade runs it


async def test_the_rendered_processes_run_a_flow_on_a_real_temporal(chart, supervisor, tmp_path):
    """The worker fleet and the setup Job exactly as rendered (command lines, variables), with a
    real Temporal (a fresh namespace of this machine's dev server) and SQLite standing in for the
    cluster's services: the new version becomes current and a run started from the Jupyter
    server's settings completes on it; SIGTERM then stops the worker within its grace period."""
    docs = render(chart, **{"worker.buildId": "smoke-1"})
    namespace = f"smoke-{os.getpid()}"
    client = await temporal.connect(Settings.from_env(), traced=False)
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400))
    )
    here = {
        "FLOWORCH_TEMPORAL_ADDRESS": supervisor.address,
        "FLOWORCH_TEMPORAL_NAMESPACE": namespace,
        "FLOWORCH_DATA_DIR": str(tmp_path),
        "FLOWORCH_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "FLOWORCH_OTEL_EXPORTER": "none",
    }

    def environment(container: dict) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        env |= pod_environment(docs, container) | here
        for name in ("FLOWORCH_DATABASE_READ_URL", "FLOWORCH_REDIS_URL"):  # the cluster's, unreachable here
            env.pop(name)
        return env

    def command(container: dict) -> list[str]:
        program = container["args"][0]
        return [
            sys.executable if program == "python" else str(Path(sys.executable).parent / program),
            *container["args"][1:],
        ]

    (fleet,) = workers(docs)
    (worker_container,) = fleet["spec"]["template"]["spec"]["containers"]
    (job,) = objects(docs, "Job")
    register, set_current = containers_of(job["spec"]["template"])
    jupyter = one(docs, "Deployment", f"{RELEASE}-jupyter")["spec"]["template"]["spec"]["containers"][0]

    done = subprocess.run(command(register), env=environment(register), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "worker.log", "wb") as log:
        proc = subprocess.Popen(
            command(worker_container), env=environment(worker_container), stdout=log, stderr=subprocess.STDOUT
        )
        try:
            # The Job retries until the fleet has polled, as its backoffLimit lets it.
            async def made_current():
                step = subprocess.run(
                    command(set_current), env=environment(set_current), capture_output=True, text=True, timeout=60
                )
                return step.returncode == 0 and "smoke-1 is the current version" in step.stdout

            await wait_until(made_current, timeout=90, interval=1)
            service = await FlowService.connect(Settings.from_env(environment(jupyter)))
            try:
                doc = flow_doc(
                    [
                        {"id": "start", "type": "trigger.manual"},
                        {"id": "hello", "type": "transform", "config": {"output": "hi {{ input.name }}"}},
                    ],
                    [("start", "hello")],
                )
                flow = service.create_workflow(doc, by="ops")["id"]
                await service.publish(flow, note="v1", by="ops")
                run_id = (await service.start_run(flow, input={"name": "Ada"}, by="ops"))["run_id"]
                run = await finished(service, run_id, timeout=90)
            finally:
                service.store.close()
            assert run["status"] == "success", run
            assert run["result"]["outputs"] == {"hello": "hi Ada"}
        finally:
            proc.send_signal(signal.SIGTERM)
            grace = fleet["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            assert proc.wait(timeout=grace) == 0, (tmp_path / "worker.log").read_text()


@pytest.mark.parametrize(
    "sets, message",
    [
        ({"temporal.enabled": "false"}, "settings.temporalAddress is required when temporal.enabled is false"),
        ({"autoscaling.keda.enabled": "true", "autoscaling.hpa.enabled": "true"}, "enable one autoscaler"),
        ({"worker.buildId": "1.4.2"}, "worker build id \"1.4.2\": use letters, digits, '_' and '-' only (no '.'"),
        ({"worker.terminationGracePeriodSeconds": "5"}, "worker.terminationGracePeriodSeconds is 5"),
        ({"secret.create": "true"}, "secret.values.database-url is empty"),
        (
            {"settings.extra.RUN_RETENTION_DAYS": "30"},
            "settings.extra.RUN_RETENTION_DAYS: names there are full FLOWORCH_* variable names",
        ),
        ({"ingress.host": ""}, "ingress.host is required when ingress.enabled is true"),
        ({"jupyter.baseUrl": "/floworch"}, "jupyter.baseUrl \"/floworch\" must start and end with '/'"),
        ({"temporalConnection.clientCertSecret": "client"}, "set temporalConnection.tls=true"),
        ({"worker.draining[0].buildId": "v1"}, 'worker.draining lists build id "v1", which is worker.buildId'),
        # values.schema.json: a misspelled or mistyped value is refused, not ignored
        ({"wroker.buildId": "v2"}, "Additional property wroker is not allowed"),
        ({"worker.replicas": "two"}, "worker.replicas: Invalid type. Expected: integer, given: string"),
        ({"settings.jupyterRole": "owner"}, "settings.jupyterRole must be one of the following"),
    ],
)
def test_bad_values_fail_with_a_message_naming_the_value(chart, sets, message):
    done = template(chart, **sets)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr
