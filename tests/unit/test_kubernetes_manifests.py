"""deploy/kubernetes/, offline: every object validates strictly (no unknown field) against the Kubernetes
JSON schemas bundled in the kubernetes-validate package (nothing is downloaded), for the oldest and the
newest Kubernetes version checked; the node's arguments are flags `openrealtime serve` accepts and
passes its own checks with the Secret's keys; probes, ports, drain and the model server's address agree
with those flags. Nothing here runs a cluster (deploy/kubernetes/README.md says what was not run)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from openrealtime.cli import build_parser, settings_from_args

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
VERSIONS = ("1.30.0", kubernetes_validate.latest_version())  # one from 2024 (managed clusters lag), the newest known
MODEL_SERVERS = ("llm-llamacpp.yaml", "llm-vllm.yaml")


def objects(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / name).read_text()) if doc]


def manifests() -> list[str]:
    return sorted(p.name for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")


def one(name: str, kind: str) -> dict:
    found = [o for o in objects(name) if o["kind"] == kind]
    assert len(found) == 1, (name, kind)
    return found[0]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", manifests())
def test_every_object_validates_strictly_against_the_kubernetes_schemas(name, version):
    docs = objects(name)
    assert docs
    for obj in docs:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{name}: {obj['kind']}/{obj['metadata']['name']} at {path}: {exc.message}")
        # a kind without a schema raises SchemaNotFoundError: it fails the test too, it is never skipped
        assert obj["metadata"].get("namespace", "openrealtime") == "openrealtime" or obj["kind"] == "Namespace"


def test_kustomization_names_files_that_exist_and_leaves_the_example_secret_out():
    kustomization = objects("kustomization.yaml")[0]
    assert all((DEPLOY / r).is_file() for r in kustomization["resources"])
    assert "secret.example.yaml" not in kustomization["resources"]
    assert sum(r in MODEL_SERVERS for r in kustomization["resources"]) == 1


def node_container() -> tuple[dict, dict]:
    pod = one("nodes.yaml", "DaemonSet")["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def node_settings(monkeypatch) -> object:
    """The node container's arguments as `openrealtime serve` reads them, with its environment (the
    Secret's keys from secret.example.yaml, the downward API's values made up)."""
    _, container = node_container()
    secret = one("secret.example.yaml", "Secret")["stringData"]
    fields = {"status.hostIP": "10.0.0.5", "spec.nodeName": "node-a"}
    env = {}
    for var in container["env"]:
        source = var.get("valueFrom", {})
        if "secretKeyRef" in source:
            assert source["secretKeyRef"]["name"] == "openrealtime"
            env[var["name"]] = secret[source["secretKeyRef"]["key"]]
        elif "fieldRef" in source:
            env[var["name"]] = fields[source["fieldRef"]["fieldPath"]]
        else:
            env[var["name"]] = var["value"]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    argv = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg) for arg in container["args"]]
    assert container["command"] == ["openrealtime"] and argv[0] == "serve"
    settings = settings_from_args(build_parser().parse_args(argv))
    settings.check()  # API keys on a public bind, cluster secret, Redis URL
    return settings


def test_the_node_runs_serve_with_flags_it_accepts_joined_to_redis(monkeypatch):
    settings = node_settings(monkeypatch)
    assert settings.redis_url and settings.cluster_secret and settings.api_keys
    assert settings.advertise_ips == ["10.0.0.5"] and settings.node_id == "node-a"
    assert settings.internal_url == f"http://10.0.0.5:{settings.port}"
    assert settings.llm_max_sessions and settings.llm_max_sessions > 0


def test_host_network_probes_ports_and_drain_agree_with_the_flags(monkeypatch):
    settings = node_settings(monkeypatch)
    pod, container = node_container()
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": settings.port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": settings.port}
    ports = {(p["containerPort"], p["protocol"]) for p in container["ports"]}
    assert ports == {(settings.port, "TCP"), (settings.udp_port, "UDP"), (settings.tcp_port, "TCP")}
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    grace = pod["terminationGracePeriodSeconds"]
    assert settings.drain_timeout_s + int(pre_stop[-1]) < grace  # the drain ends before SIGKILL
    service = one("nodes.yaml", "Service")
    assert service["spec"]["ports"][0]["targetPort"] == settings.port
    assert service["spec"]["selector"].items() <= pod_labels().items()


def pod_labels() -> dict:
    return one("nodes.yaml", "DaemonSet")["spec"]["template"]["metadata"]["labels"]


@pytest.mark.parametrize("name", MODEL_SERVERS)
def test_the_llm_url_reaches_each_example_model_server(monkeypatch, name):
    url = urlsplit(node_settings(monkeypatch).llm_url)
    service = one(name, "Service")
    deployment = one(name, "Deployment")
    assert url.hostname.split(".")[:2] == [service["metadata"]["name"], service["metadata"]["namespace"]]
    assert url.port == service["spec"]["ports"][0]["port"] and url.path == "/v1"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert f"--port={service['spec']['ports'][0]['targetPort']}" in container["args"]
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
