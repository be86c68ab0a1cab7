"""deploy/helm/donjon, validated offline: rendered by Helm's own engine, then typed and checked.

Rendering uses Helm's Go SDK through ``helm-python-sdk`` (no cluster). Every
object is then (1) deserialized into the official Kubernetes Python client's
typed model and serialized back, which must give the same document (a field
the API does not know would be dropped, and fail here); (2) validated against
the Kubernetes API's JSON schema (``kubernetes-validate``, strict: unknown
fields refused); (3) checked for the security settings every pod must have.
The ServiceMonitor is a Prometheus Operator CRD, outside the core schema: its
fields are checked against the monitoring.coreos.com/v1 ones we use.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

helm = pytest.importorskip("helm_python", reason="helm-python-sdk is not installed (donjon[dev])")
kubernetes = pytest.importorskip("kubernetes", reason="the kubernetes client is not installed")
kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate")

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "donjon"
K8S_VERSION = "1.30.0"

#: (apiVersion, kind) -> the client's model class name
MODELS = {
    ("apps/v1", "Deployment"): "V1Deployment",
    ("apps/v1", "StatefulSet"): "V1StatefulSet",
    ("v1", "Service"): "V1Service",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
    ("networking.k8s.io/v1", "NetworkPolicy"): "V1NetworkPolicy",
}

VALUES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "trial-snp-hsm": {
        "database": {"mode": "statefulset"},
        "keep": {"enabled": True},
        "steward": {
            "replicas": 2,
            "pdb": {"minAvailable": 1},
            "ca": {"mode": "pkcs11", "pkcs11": {"moduleVolume": {"emptyDir": {}}}},
        },
    },
    "tdx": {"keep": {"enabled": True, "runtimeClassName": "kata-qemu-tdx", "platform": "tdx"}},
}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(values, name="demo", namespace="donjon")
    objects = []
    for text in manifests.values():
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def _typed_round_trip(obj: dict[str, Any]) -> Any:
    client = kubernetes.client.ApiClient()
    kind = MODELS[(obj["apiVersion"], obj["kind"])]
    model = client.deserialize(json.dumps(obj), kind, "application/json")
    assert client.sanitize_for_serialization(model) == _normalized(obj), obj["metadata"]["name"]
    return model


def _normalized(value: Any) -> Any:
    """What the client serializes back: no nulls, ints for int fields, same structure."""
    if isinstance(value, dict):
        return {k: _normalized(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    return value


def _pod_specs(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if obj["kind"] in ("Deployment", "StatefulSet"):
        yield obj["spec"]["template"]["spec"]


@pytest.fixture(scope="module", params=sorted(VALUES))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(VALUES[request.param])


def test_every_object_is_a_typed_kubernetes_object_valid_against_the_api_schema(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, objects = rendered
    kinds = set()
    for obj in objects:
        kinds.add(obj["kind"])
        if obj["kind"] == "ServiceMonitor":
            continue
        _typed_round_trip(obj)
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    assert {"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"} <= kinds


def test_a_field_the_api_does_not_know_is_caught() -> None:
    """The checks above can fail: a misspelt field is refused by both."""
    deployment = next(o for o in render({}) if o["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    with pytest.raises(AssertionError):
        _typed_round_trip(deployment)


def test_every_pod_and_container_is_locked_down(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    pods = [spec for obj in objects for spec in _pod_specs(obj)]
    assert pods
    for spec in pods:
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec.get("automountServiceAccountToken") is False
        assert not spec.get("hostNetwork") and not spec.get("hostPID")
        assert all("hostPath" not in v for v in spec.get("volumes", []))
        for container in spec["containers"] + spec.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["runAsNonRoot"] is True, container["name"]
            assert sc["readOnlyRootFilesystem"] is True, container["name"]
            assert sc["allowPrivilegeEscalation"] is False, container["name"]
            assert sc["privileged"] is False, container["name"]
            assert sc["capabilities"] == {"drop": ["ALL"]}, container["name"]
            assert "requests" in container["resources"], container["name"]


def test_the_steward_deployment(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = rendered
    by_kind = {o["kind"]: o for o in objects if o["metadata"]["name"] == "demo-steward"}
    deployment = by_kind["Deployment"]
    replicas = deployment["spec"]["replicas"]
    assert replicas == (2 if name == "trial-snp-hsm" else 3)
    assert by_kind["PodDisruptionBudget"]["spec"]["minAvailable"] < replicas
    spec = deployment["spec"]["template"]["spec"]
    steward = spec["containers"][0]
    assert steward["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert steward["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert [c["name"] for c in spec["initContainers"]] == ["private-copies", "db-upgrade"]
    args = steward["args"]
    assert "--db=$(DONJON_DB_URL)" in args and "--workers=2" in args
    ca_key = next(a for a in args if a.startswith("--ca-key="))
    if name == "trial-snp-hsm":
        assert ca_key.startswith("--ca-key=pkcs11:token=donjon;object=steward-ca?module-path=")
        assert any(o["kind"] == "StatefulSet" for o in objects)
    else:
        assert ca_key == "--ca-key=/run/donjon/ca.key"
        assert not any(o["kind"] == "StatefulSet" for o in objects)
    monitor = next(o for o in objects if o["kind"] == "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor["spec"]) == {"selector", "endpoints"}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert set(endpoint) <= {"port", "path", "scheme", "interval", "tlsConfig"}
    assert (endpoint["port"], endpoint["path"]) == ("https", "/metrics")
    service = by_kind["Service"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_keeps_run_as_confidential_containers(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = rendered
    keeps = [o for o in objects if o["metadata"]["name"] == "demo-keep-http"]
    if name == "defaults":
        assert keeps == []
        return
    deployment = next(o for o in keeps if o["kind"] == "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    expected = {"trial-snp-hsm": ("kata-qemu-snp", "snp"), "tdx": ("kata-qemu-tdx", "tdx")}[name]
    env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    assert (spec["runtimeClassName"], env["DONJON_PLATFORM"]) == expected
    config = next(o for o in objects if o["kind"] == "ConfigMap")
    assert 'steward = "https://demo-steward:8443"' in config["data"]["Donjon.toml"]
