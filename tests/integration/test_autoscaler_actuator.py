"""The GPU autoscaler's actuator: the real `kubernetes` client over HTTP against kmock's
emulated API server (tests/fixtures/rayservice.py) holding a KubeRay RayService."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kmock import Server

from inference.autoscaler.actuator import (
    CONFLICT,
    FORBIDDEN,
    NOT_FOUND,
    SERVE_CONFIG,
    ActuatorError,
    NoClusterError,
    RayServiceActuator,
    Target,
    load_api,
)
from tests.fixtures.rayservice import (
    NAME,
    NAMESPACE,
    RayServiceApi,
    custom_objects_api,
    deployment_config,
    rayservice_manifest,
)

TARGET = Target(namespace=NAMESPACE, rayservice=NAME, app=NAME, deployment="LocalModel")

Scenario = Callable[[RayServiceApi, RayServiceActuator], Awaitable[None]]


def run(
    scenario: Scenario, *, dry_run: bool = False, manifest: dict[str, Any] | None = None
) -> None:
    async def main() -> None:
        async with RayServiceApi() as kmock, Server(kmock):
            kmock.add_rayservice(manifest)
            actuator = RayServiceActuator(
                custom_objects_api(str(kmock.url)), TARGET, dry_run=dry_run
            )
            await scenario(kmock, actuator)

    asyncio.run(main())


def without_floor(manifest: dict[str, Any]) -> dict[str, Any]:
    """The object minus what a patch of the floor may change."""
    manifest = copy.deepcopy(manifest)
    manifest["metadata"].pop("resourceVersion")
    serve_config = yaml.safe_load(manifest["spec"].pop("serveConfigV2"))
    for app in serve_config["applications"]:
        for deployment in app["deployments"]:
            deployment["autoscaling_config"].pop("min_replicas")
            deployment["autoscaling_config"].pop("initial_replicas", None)
            deployment["autoscaling_config"].pop("max_replicas")
    manifest["spec"]["serveConfig"] = serve_config
    return manifest


def patches(kmock: RayServiceApi) -> list[Any]:
    return [request for request in kmock if request.method == "PATCH"]


def test_the_floor_is_patched_and_read_back() -> None:
    async def scenario(kmock: RayServiceApi, actuator: RayServiceActuator) -> None:
        before = copy.deepcopy(kmock.stored())
        floor = await actuator.read()
        assert floor.current == 0
        assert floor.resource_version == before["metadata"]["resourceVersion"]

        outcome = await actuator.apply(floor, 3)
        assert outcome.applied
        after = kmock.stored()
        autoscaling = deployment_config(after["spec"]["serveConfigV2"])["autoscaling_config"]
        # The floor moved; Serve's config stays valid (initial within min..max); max unchanged.
        assert autoscaling == {
            "min_replicas": 3,
            "initial_replicas": 3,
            "max_replicas": 4,
            "target_ongoing_requests": 8,
            "upscale_delay_s": 10,
            "downscale_delay_s": 300,
        }
        assert after["metadata"]["resourceVersion"] != before["metadata"]["resourceVersion"]
        assert without_floor(after) == without_floor(before)
        assert (await actuator.read()).current == 3

        # Above max_replicas: max rises with it, so that Serve accepts the config.
        await actuator.apply(await actuator.read(), 6)
        autoscaling = deployment_config(kmock.stored()["spec"]["serveConfigV2"])[
            "autoscaling_config"
        ]
        assert (autoscaling["min_replicas"], autoscaling["max_replicas"]) == (6, 6)

        # Back to zero: only the floor goes down (initial and max stay where they were).
        await actuator.apply(await actuator.read(), 0)
        autoscaling = deployment_config(kmock.stored()["spec"]["serveConfigV2"])[
            "autoscaling_config"
        ]
        assert autoscaling["min_replicas"] == 0
        assert autoscaling["max_replicas"] == 6
        assert without_floor(kmock.stored()) == without_floor(before)
        [first, *_] = patches(kmock)
        assert first.headers["Content-Type"] == "application/merge-patch+json"
        assert "resourceVersion" in first.data["metadata"]

    run(scenario)


def test_the_shipped_rayservice_is_patched_and_read_back() -> None:
    """k8s/base's RayService, as kustomize's base holds it."""
    path = Path(__file__).parents[2] / "k8s" / "base" / "rayservice.yaml"
    if not path.is_file():
        pytest.skip("no k8s/base/rayservice.yaml in this checkout")
    manifest = yaml.safe_load(path.read_text())
    assert manifest["metadata"]["name"] == NAME

    async def scenario(kmock: RayServiceApi, actuator: RayServiceActuator) -> None:
        before = copy.deepcopy(kmock.stored())
        floor = await actuator.read()
        desired = floor.current + 2
        await actuator.apply(floor, desired)
        after = kmock.stored()
        autoscaling = deployment_config(after["spec"]["serveConfigV2"])["autoscaling_config"]
        assert autoscaling["min_replicas"] == desired
        assert autoscaling["max_replicas"] >= desired
        assert autoscaling.get("initial_replicas", desired) >= desired
        assert without_floor(after) == without_floor(before)
        assert (await actuator.read()).current == desired

    run(scenario, manifest=manifest)


def test_a_refused_patch_is_reported() -> None:
    async def scenario(kmock: RayServiceApi, actuator: RayServiceActuator) -> None:
        kmock.verbs = {"get"}
        before = copy.deepcopy(kmock.stored())
        floor = await actuator.read()
        with pytest.raises(ActuatorError) as raised:
            await actuator.apply(floor, 2)
        assert raised.value.reason == FORBIDDEN
        assert raised.value.status == 403
        assert "cannot patch resource" in str(raised.value)
        assert kmock.stored() == before

        kmock.verbs = set()
        with pytest.raises(ActuatorError) as raised:
            await actuator.read()
        assert raised.value.reason == FORBIDDEN

    run(scenario)


def test_a_concurrent_change_answers_409_and_is_reported() -> None:
    async def scenario(kmock: RayServiceApi, actuator: RayServiceActuator) -> None:
        floor = await actuator.read()
        kmock.change_behind_its_back()
        before = copy.deepcopy(kmock.stored())
        with pytest.raises(ActuatorError) as raised:
            await actuator.apply(floor, 2)
        assert raised.value.reason == CONFLICT
        assert raised.value.status == 409
        assert "the object has been modified" in str(raised.value)
        assert kmock.stored() == before
        # The next evaluation reads the new version and its patch goes through.
        await actuator.apply(await actuator.read(), 2)
        assert (await actuator.read()).current == 2

    run(scenario)


def test_dry_run_patches_nothing() -> None:
    async def scenario(kmock: RayServiceApi, actuator: RayServiceActuator) -> None:
        before = copy.deepcopy(kmock.stored())
        floor = await actuator.read()
        outcome = await actuator.apply(floor, 2)
        assert not outcome.applied
        would_be = deployment_config(outcome.body["spec"]["serveConfigV2"])
        assert would_be["autoscaling_config"]["min_replicas"] == 2
        assert outcome.body["metadata"] == {"resourceVersion": floor.resource_version}
        assert patches(kmock) == []
        assert kmock.stored() == before
        assert (await actuator.read()).current == 0

    run(scenario, dry_run=True)


def test_a_missing_object_or_deployment_is_reported() -> None:
    async def scenario(kmock: RayServiceApi, actuator: RayServiceActuator) -> None:
        other = Target(NAMESPACE, "no-such-service", NAME, "LocalModel")
        with pytest.raises(ActuatorError) as raised:
            await RayServiceActuator(actuator.api, other, dry_run=False).read()
        assert raised.value.reason == NOT_FOUND
        other = Target(NAMESPACE, NAME, NAME, "NoSuchDeployment")
        with pytest.raises(ActuatorError) as raised:
            await RayServiceActuator(actuator.api, other, dry_run=False).read()
        assert raised.value.reason == SERVE_CONFIG

    run(scenario)


def test_dry_run_without_a_cluster_counts_from_its_own_decisions() -> None:
    async def main() -> None:
        actuator = RayServiceActuator(None, TARGET, dry_run=True, initial=1)
        assert not actuator.has_cluster
        floor = await actuator.read()
        assert floor.current == 1
        outcome = await actuator.apply(floor, 3)
        assert not outcome.applied
        assert (await actuator.read()).current == 3

    asyncio.run(main())
    with pytest.raises(NoClusterError):
        RayServiceActuator(None, TARGET, dry_run=False)


def test_kube_config_is_found_or_its_absence_is_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(NoClusterError, match="KUBECONFIG"):
        load_api(dry_run=False)
    assert load_api(dry_run=True) == (None, "none")

    async def main() -> None:
        async with RayServiceApi() as kmock, Server(kmock):
            kmock.add_rayservice(rayservice_manifest())
            kubeconfig = tmp_path / "config"
            kubeconfig.write_text(
                yaml.safe_dump(
                    {
                        "apiVersion": "v1",
                        "kind": "Config",
                        "clusters": [{"name": "emulated", "cluster": {"server": str(kmock.url)}}],
                        "users": [{"name": "autoscaler", "user": {"token": "emulated-token"}}],
                        "contexts": [
                            {
                                "name": "emulated",
                                "context": {"cluster": "emulated", "user": "autoscaler"},
                            }
                        ],
                        "current-context": "emulated",
                    }
                )
            )
            monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
            api, source = load_api(dry_run=False)
            assert source == "kubeconfig"
            floor = await RayServiceActuator(api, TARGET, dry_run=False).read()
            assert floor.current == 0
            [request] = list(kmock)
            assert request.headers["Authorization"] == "Bearer emulated-token"

    asyncio.run(main())
