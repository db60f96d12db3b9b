"""Where the GPU autoscaler's decision takes effect: the Serve deployment's autoscaling floor.

The actuator reads the RayService (`ray.io/v1`, `rayservices`) named by AUTOSCALER_RAYSERVICE,
parses its `spec.serveConfigV2` (a YAML string), and in application AUTOSCALER_SERVE_APP,
deployment AUTOSCALER_SERVE_DEPLOYMENT, sets `autoscaling_config.min_replicas` to the desired
count (raising `max_replicas`, and `initial_replicas` when set, to at least that so that Serve
accepts the config). It patches the RayService back with a JSON merge patch that carries the
`metadata.resourceVersion` it read: a change made in between answers 409 instead of being
overwritten.

Why it does not fight Ray: Serve's own autoscaler still moves the replicas between this floor
and max_replicas on the requests it sees; KubeRay applies a serveConfigV2 change in place (no
new cluster); Ray's autoscaler turns replicas into GPU worker pods, and the node autoscaler adds
GPU nodes. The floor is the one number nobody else writes.

The Kubernetes client is synchronous: its calls run in a thread.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as TransportError

from core.config import Settings

log = logging.getLogger("hivesync.autoscaler")

GROUP, VERSION, PLURAL = "ray.io", "v1", "rayservices"
MERGE_PATCH = "application/merge-patch+json"
# Ray Serve's own default for an autoscaling_config without min_replicas.
SERVE_DEFAULT_MIN_REPLICAS = 1
API_TIMEOUT_S = 10.0

# Why a patch (or the read before it) failed: the `reason` label of the failure counter.
FORBIDDEN, CONFLICT, NOT_FOUND, REJECTED, UNREACHABLE, SERVE_CONFIG = (
    "forbidden",
    "conflict",
    "not_found",
    "rejected",
    "unreachable",
    "serve_config",
)


class ActuatorError(Exception):
    """A read or a patch of the RayService that did not happen; `reason` says why."""

    def __init__(self, reason: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


class NoClusterError(Exception):
    """No Kubernetes configuration was found (not in a pod, no kubeconfig)."""


@dataclass(frozen=True)
class Target:
    namespace: str
    rayservice: str
    app: str
    deployment: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Target:
        return cls(
            namespace=settings.autoscaler_namespace,
            rayservice=settings.autoscaler_rayservice,
            app=settings.autoscaler_serve_app,
            deployment=settings.autoscaler_serve_deployment,
        )

    def describe(self) -> str:
        return f"rayservice/{self.rayservice} ({self.namespace}) {self.app}/{self.deployment}"


@dataclass(frozen=True)
class ServeFloor:
    """The RayService as read: the deployment's floor, and what a patch must be based on."""

    current: int  # autoscaling_config.min_replicas
    resource_version: str | None
    serve_config: dict[str, Any]  # serveConfigV2, parsed


@dataclass(frozen=True)
class PatchOutcome:
    desired: int
    applied: bool  # False in dry-run
    body: dict[str, Any]  # the merge patch sent (or that would have been)


def load_api(dry_run: bool) -> tuple[k8s.CustomObjectsApi | None, str]:
    """The client and where its configuration came from: in-cluster (a pod's service
    account), else the kubeconfig (KUBECONFIG or ~/.kube/config). Without either, None in
    dry-run; otherwise NoClusterError."""
    try:
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
            return k8s.CustomObjectsApi(), "in-cluster"
        kubeconfig = os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())
        if any(Path(path).is_file() for path in kubeconfig.split(os.pathsep) if path):
            k8s_config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
            return k8s.CustomObjectsApi(), "kubeconfig"
    except k8s_config.ConfigException as error:
        raise NoClusterError(f"unusable Kubernetes configuration: {error}") from error
    if dry_run:
        return None, "none"
    raise NoClusterError(
        "no Kubernetes cluster configured: not running in a pod (KUBERNETES_SERVICE_HOST unset) "
        f"and no kubeconfig at {kubeconfig}; set KUBECONFIG, or AUTOSCALER_DRY_RUN=true to run "
        "without a cluster"
    )


class RayServiceActuator:
    """Reads and writes the Serve deployment's floor in one RayService.

    Without a cluster (`api` None, dry-run only) nothing is read: the current count is the
    last desired one, starting at `initial`."""

    def __init__(
        self,
        api: k8s.CustomObjectsApi | None,
        target: Target,
        *,
        dry_run: bool,
        initial: int = 0,
    ) -> None:
        if api is None and not dry_run:
            raise NoClusterError("an actuator without a cluster can only run in dry-run")
        self.api = api
        self.target = target
        self.dry_run = dry_run
        self._simulated = initial

    @property
    def has_cluster(self) -> bool:
        return self.api is not None

    async def read(self) -> ServeFloor:
        if self.api is None:
            return ServeFloor(current=self._simulated, resource_version=None, serve_config={})
        rayservice = await self._call(
            self.api.get_namespaced_custom_object,
            GROUP,
            VERSION,
            self.target.namespace,
            PLURAL,
            self.target.rayservice,
        )
        serve_config = self._serve_config(rayservice)
        autoscaling = self._autoscaling_config(serve_config)
        return ServeFloor(
            current=int(autoscaling.get("min_replicas", SERVE_DEFAULT_MIN_REPLICAS)),
            resource_version=(rayservice.get("metadata") or {}).get("resourceVersion"),
            serve_config=serve_config,
        )

    def patch_for(self, floor: ServeFloor, desired: int) -> dict[str, Any]:
        """The merge patch that sets the floor to `desired` (nothing else of serveConfigV2
        changes, though its YAML is written anew: comments and layout are not kept)."""
        serve_config = copy.deepcopy(floor.serve_config)
        autoscaling = self._autoscaling_config(serve_config)
        autoscaling["min_replicas"] = desired
        if int(autoscaling.get("max_replicas", desired)) < desired:
            autoscaling["max_replicas"] = desired
        if "initial_replicas" in autoscaling and int(autoscaling["initial_replicas"]) < desired:
            autoscaling["initial_replicas"] = desired
        metadata = {"resourceVersion": floor.resource_version} if floor.resource_version else {}
        return {
            "metadata": metadata,
            "spec": {"serveConfigV2": yaml.safe_dump(serve_config, sort_keys=False)},
        }

    async def apply(self, floor: ServeFloor, desired: int) -> PatchOutcome:
        """Write `desired` as the floor, based on `floor` (as read this evaluation). In
        dry-run, log what would be patched and patch nothing. Raises ActuatorError."""
        if self.api is None:
            log.info(
                "dry-run without a cluster: would set the floor",
                extra={"target": self.target.describe(), "desired": desired},
            )
            self._simulated = desired
            return PatchOutcome(desired, applied=False, body={})
        body = self.patch_for(floor, desired)
        if self.dry_run:
            log.info(
                "dry-run: would patch the RayService",
                extra={"target": self.target.describe(), "desired": desired, "patch": body},
            )
            return PatchOutcome(desired, applied=False, body=body)
        await self._call(
            self.api.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            self.target.namespace,
            PLURAL,
            self.target.rayservice,
            body,
            _content_type=MERGE_PATCH,
        )
        log.info(
            "patched the RayService",
            extra={"target": self.target.describe(), "from": floor.current, "desired": desired},
        )
        return PatchOutcome(desired, applied=True, body=body)

    async def _call(self, method: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            result = await asyncio.to_thread(
                method, *args, _request_timeout=API_TIMEOUT_S, **kwargs
            )
        except ApiException as error:
            raise ActuatorError(_reason(error.status), _message(error), error.status) from error
        except (TransportError, OSError) as error:
            raise ActuatorError(UNREACHABLE, f"Kubernetes API unreachable: {error}") from error
        if not isinstance(result, dict):
            raise ActuatorError(REJECTED, f"unexpected answer from the API: {type(result)}")
        return result

    def _serve_config(self, rayservice: dict[str, Any]) -> dict[str, Any]:
        text = (rayservice.get("spec") or {}).get("serveConfigV2")
        if not isinstance(text, str):
            raise ActuatorError(SERVE_CONFIG, f"{self.target.describe()}: no spec.serveConfigV2")
        try:
            parsed = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ActuatorError(SERVE_CONFIG, f"serveConfigV2 is not YAML: {error}") from error
        if not isinstance(parsed, dict):
            raise ActuatorError(SERVE_CONFIG, "serveConfigV2 is not a mapping")
        return parsed

    def _autoscaling_config(self, serve_config: dict[str, Any]) -> dict[str, Any]:
        """The deployment's autoscaling_config, inside `serve_config` (edits go there)."""
        for app in serve_config.get("applications") or []:
            if isinstance(app, dict) and app.get("name") == self.target.app:
                for deployment in app.get("deployments") or []:
                    if isinstance(deployment, dict) and deployment.get("name") == (
                        self.target.deployment
                    ):
                        autoscaling = deployment.get("autoscaling_config")
                        if isinstance(autoscaling, dict):
                            return autoscaling
                        raise ActuatorError(
                            SERVE_CONFIG,
                            f"{self.target.describe()}: the deployment has no autoscaling_config "
                            "(a fixed num_replicas leaves no floor to set)",
                        )
        raise ActuatorError(
            SERVE_CONFIG, f"{self.target.describe()}: no such application/deployment in the config"
        )


def _reason(status: int | None) -> str:
    return {403: FORBIDDEN, 409: CONFLICT, 404: NOT_FOUND}.get(status or 0, REJECTED)


def _message(error: ApiException) -> str:
    """The API server's own message (its Status body), else the HTTP reason."""
    message = None
    if isinstance(error.body, str | bytes):
        try:
            status = json.loads(error.body)
            if isinstance(status, dict):
                message = status.get("message")
        except ValueError:
            message = None
    return f"{error.status} {error.reason}: {message or ''}".rstrip(": ")
