"""deploy/: the compose file and the Kubernetes manifests against their schemas, and what they promise.

No cluster runs here, so each manifest is checked against the Kubernetes JSON schemas that the
kubernetes-validate package ships (strict: an unknown or misspelt field fails), the KEDA ScaledObject
against KEDA's CRD schema and compose.yaml against the compose-spec schema (both vendored in
tests/packaging/schemas, see its README). The KEDA queries are checked against what a real app's
/metrics exports.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
K8S_VERSION = "1.31"
IMAGE_UID = 10001  # packaging/build-image.sh's user


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in k8s_documents() if doc["kind"] == kind}


def keda_schema() -> dict[str, Any]:
    return json.loads((SCHEMAS / "keda-scaledobject-v1alpha1.json").read_text())


@pytest.mark.parametrize(("name", "doc"), k8s_documents(), ids=lambda v: v if isinstance(v, str) else "")
def test_each_manifest_matches_its_schema(name: str, doc: dict[str, Any]) -> None:
    if doc["apiVersion"].startswith("keda.sh/"):
        jsonschema.validate(doc, keda_schema())
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_validators_catch_a_broken_manifest() -> None:
    deployment = by_kind("Deployment")["barkserve-api"]
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["httpGet"]["paht"] = probe["httpGet"].pop("path")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    scaled = by_kind("ScaledObject")["barkserve-api"]
    del scaled["spec"]["scaleTargetRef"]["name"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, keda_schema())
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    compose["services"]["barkserve"]["helthcheck"] = compose["services"]["barkserve"].pop("healthcheck")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(compose, json.loads((SCHEMAS / "compose-spec.json").read_text()))


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def pod_specs() -> dict[str, dict[str, Any]]:
    specs = {name: d["spec"]["template"]["spec"] for name, d in by_kind("Deployment").items()}
    specs.update({name: d["spec"]["template"]["spec"] for name, d in by_kind("Job").items()})
    return specs


def test_deployments_probe_health_run_as_the_image_user_and_request_resources() -> None:
    deployments = by_kind("Deployment")
    assert set(deployments) == {"barkserve-api", "barkserve-jobs"}
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["path"] == "/health", (name, probe)
        assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {"/data/hf-cache", "/data/voices", "/data/output", "/data/jobs"} <= mounts, name
        # Both share one PostgreSQL: the same Secret's URL.
        env = {e["name"]: e for e in container["env"]}
        database = env["BARKSERVE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert database == {"name": "barkserve-database", "key": "url"}
    assert by_kind("Service")["barkserve"]["spec"]["selector"]["app.kubernetes.io/component"] == "api"
    for name, pod in pod_specs().items():
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == IMAGE_UID
        assert pod["securityContext"]["runAsGroup"] == 0, name  # the image's folders are group-0 writable


def test_every_claim_and_secret_a_pod_uses_is_defined() -> None:
    claims, secrets = set(by_kind("PersistentVolumeClaim")), set(by_kind("Secret"))
    assert "barkserve-admin-key" in secrets
    for name, pod in pod_specs().items():
        for volume in pod.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, name
        for container in pod["containers"]:
            for env in container.get("env", []):
                if "valueFrom" in env:
                    assert env["valueFrom"]["secretKeyRef"]["name"] in secrets, name
    first_key = by_kind("Job")["barkserve-first-key"]["spec"]["template"]["spec"]["containers"][0]
    assert first_key["args"][:2] == ["keys", "create"] and "admin" in first_key["args"]
    # It registers the key kept in the admin Secret: nothing secret is made or printed in the Job's log.
    var = first_key["args"][first_key["args"].index("--secret-from-env") + 1]
    (env,) = [e for e in first_key["env"] if e["name"] == var]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "barkserve-admin-key", "key": "key"}


def test_compose_matches_the_compose_spec_and_reserves_a_gpu_for_cuda() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    jsonschema.validate(compose, json.loads((SCHEMAS / "compose-spec.json").read_text()))
    cpu, cuda = compose["services"]["barkserve"], compose["services"]["barkserve-cuda"]
    assert cpu["image"].endswith("-cpu") and cuda["image"].endswith("-cuda")
    (device,) = cuda["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    for service in (cpu, cuda):
        assert service["healthcheck"]["test"] == ["CMD", "/usr/local/bin/barkserve-healthcheck"]
        assert {v.split(":")[1] for v in service["volumes"]} == {"/data/hf-cache", "/data/voices", "/data/output",
                                                                 "/data/jobs"}  # fmt: skip


# Labels a Prometheus adds when it scrapes a pod (pod labels through labelmap): not the app's to export.
SCRAPE_LABELS = re.compile(r"^(app_kubernetes_io_\w+|namespace|pod|instance|job)$")


def keda_queries() -> list[str]:
    return [
        trigger["metadata"]["query"]
        for scaled in by_kind("ScaledObject").values()
        for trigger in scaled["spec"]["triggers"]
        if trigger["type"] == "prometheus"
    ]


def selectors(query: str) -> list[tuple[str, dict[str, str]]]:
    """(metric name, {label: value}) of every `name{...}` or bare `name` in a PromQL query."""
    found = []
    for match in re.finditer(r"\b(barkserve_\w+)(\{([^}]*)\})?", query):
        labels = dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', match.group(3) or ""))
        found.append((match.group(1), labels))
    return found


def test_keda_scales_on_queue_metrics_that_metrics_really_exports(make_app: Any) -> None:
    """Each trigger's metric (and its app-side label values) is in a real app's /metrics, after real work."""
    scaled = by_kind("ScaledObject")
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled.values()} == {"barkserve-api", "barkserve-jobs"}
    assert all(t["type"] == "prometheus" for s in scaled.values() for t in s["spec"]["triggers"])  # not cpu
    app = make_app()
    client = app.test_client()
    made = client.post("/synthesize", json={"text": "Hi.", "max_duration_sec": 0.1, "seed": 1})
    assert made.status_code == 200, made.get_json()
    assert client.post("/jobs", json={"text": "Queued.", "max_duration_sec": 0.1}).status_code in (200, 201, 202)
    exported: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True)):
        for sample in family.samples:
            exported.setdefault(sample.name, []).append(sample.labels)
    wanted = [s for query in keda_queries() for s in selectors(query)]
    assert {name for name, _ in wanted} == {"barkserve_engine_queued_requests", "barkserve_jobs"}
    for name, labels in wanted:
        assert name in exported, f"{name} is not in /metrics; exported: {sorted(exported)}"
        app_labels = {k: v for k, v in labels.items() if not SCRAPE_LABELS.match(k)}
        assert any(app_labels.items() <= sample.items() for sample in exported[name]), (name, app_labels)
