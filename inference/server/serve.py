"""The local model on Ray Serve: the OpenAI-compatible app of inference/server/openai_app.py as the
ingress of a deployment whose replicas each hold the model and batch with `@serve.batch`.

`build_app(settings)` gives the Serve application; `hivesync inference` (cli/inference.py) runs
it on a local Ray, and on Kubernetes a KubeRay RayService runs it with
`import_path: inference.server.serve:app` (the application built from the environment's settings).

Where vLLM is installed on a GPU machine, Ray Serve's LLM support (`ray.serve.llm`,
`build_openai_app`) could serve the model instead, with continuous batching and the same
OpenAI protocol; this module stays the transformers path that runs anywhere, CPU included.
"""

from __future__ import annotations

import asyncio
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray import serve

from inference.server.batching import MicroBatcher

if TYPE_CHECKING:
    from fastapi import FastAPI
    from ray.serve import Application

    from core.config import Settings
    from inference.server.local_model import ChatRequest, Completion, PreparedChat

log = logging.getLogger("hivesync.inference.serve")

APP_NAME = "hivesync-inference"
DEPLOYMENT_NAME = "LocalModel"


def autoscaling_config(settings: Settings) -> dict[str, Any]:
    """Replica autoscaling for a batching LLM server.

    - target_ongoing_requests = 2 x max_batch_size: a replica is fully used when one batch
      runs while the next one fills, and that costs little more than one request alone (the
      batch decodes in lockstep). Ray's default target of 2 would add a replica, which loads a
      model and holds a GPU, as soon as two requests overlap, long before batching saturates.
    - upscale_delay_s = 30: the load must last before a replica is added; a burst shorter
      than that drains faster than a new replica loads its model (SmolLM2 on CPU ~2-15 s, a
      7-8B model on a GPU a minute or more).
    - downscale_delay_s = 600: keep a loaded replica through a lull of up to 10 minutes,
      since getting it back costs a model load (and the GPU may be gone meanwhile).
    - look_back_period_s = 30: the load is averaged over the lifetime of a few long requests.
    """
    return {
        "min_replicas": settings.inference_min_replicas,
        "initial_replicas": max(1, settings.inference_min_replicas),
        "max_replicas": max(settings.inference_max_replicas, settings.inference_min_replicas),
        "target_ongoing_requests": 2 * settings.inference_max_batch_size,
        "upscale_delay_s": 30.0,
        "downscale_delay_s": 600.0,
        "look_back_period_s": 30.0,
    }


def max_ongoing_requests(settings: Settings) -> int:
    """Requests a replica accepts at once: 4 batches' worth, twice the autoscaling target, so a
    busy replica still queues a few batches itself. Beyond that, requests wait in Serve's
    proxy for a replica with room, which may be a new one (back pressure, not failure)."""
    return 4 * settings.inference_max_batch_size


def replica_resources(settings: Settings) -> dict[str, float]:
    """What Ray reserves for each replica. With INFERENCE_NUM_GPUS=1 a replica is placed only on
    a node with a free GPU, and Ray sets its CUDA_VISIBLE_DEVICES to that GPU."""
    return {"num_gpus": settings.inference_num_gpus, "num_cpus": settings.inference_num_cpus}


def replica_device(settings: Settings) -> str:
    """Where a replica loads the model: on the GPU Ray gave it when INFERENCE_NUM_GPUS > 0
    (in half precision, see local_model.model_dtype), else on the CPU. Said explicitly: in Ray
    2.60 a replica that asked for no GPU still sees the node's GPUs (Ray leaves
    CUDA_VISIBLE_DEVICES alone when it assigns none), and would use one not reserved for it."""
    return "cuda" if settings.inference_num_gpus > 0 else "cpu"


def torch_threads(settings: Settings) -> int:
    """A replica's torch threads: INFERENCE_TORCH_THREADS, else its CPUs rounded up."""
    return settings.inference_torch_threads or max(1, math.ceil(settings.inference_num_cpus))


def build_app(settings: Settings) -> Application:
    """The Serve application of the local model: resources, autoscaling and batching from the
    settings. Replicas get only what they need from them (no secrets)."""
    model_path = _absolute(settings.local_ai_model_path)
    cache_dir = settings.inference_cache_dir.expanduser().resolve()
    threads = torch_threads(settings)
    device = replica_device(settings)
    max_batch_size = settings.inference_max_batch_size
    model_name = settings.local_ai_model

    @serve.deployment(
        name=DEPLOYMENT_NAME,
        ray_actor_options=replica_resources(settings),
        autoscaling_config=autoscaling_config(settings),
        max_ongoing_requests=max_ongoing_requests(settings),
        # Loading a model is slow: give replicas time to start, and in-flight batches time to
        # finish when one stops.
        health_check_period_s=10,
        health_check_timeout_s=60,
        graceful_shutdown_timeout_s=60,
    )
    @serve.ingress()
    class LocalModelServer:
        """One replica: the model, its batch queue, and the OpenAI app over them."""

        def __init__(self) -> None:
            from inference.server.local_model import LocalModel

            self.model = LocalModel.load(
                model_path, cache_dir=cache_dir, num_threads=threads, device=device
            )
            # The model runs one batch at a time; what arrives meanwhile waits here and makes
            # the next batch (wait 0: Serve's batching already waited for company).
            self.batcher = MicroBatcher(
                self.model.generate, max_batch_size=max_batch_size, batch_wait_s=0.0
            )
            self.stats = self.batcher.stats

        def __serve_build_asgi_app__(self) -> FastAPI:
            from inference.server.openai_app import create_openai_app

            return create_openai_app(self.generate, model_name=model_name, stats=self.stats.as_dict)

        async def generate(self, request: ChatRequest) -> Completion:
            # Checked and tokenized one by one, so that a bad request fails alone.
            prepared = await asyncio.to_thread(self.model.prepare, request)
            completion: Completion = await self.generate_batch(prepared)
            return completion

        @serve.batch(  # type: ignore[untyped-decorator]  # Ray is Any to mypy
            max_batch_size=max_batch_size,
            batch_wait_timeout_s=settings.inference_batch_wait_s,
            # Serve closes a batch when its wait ends even while the model is busy with the
            # previous one: measured, 8 calls arriving within 0.3 s ran as 2-3 small batches.
            # So Serve's batches are handed over at once, and the micro-batcher merges those
            # that arrive while the model runs into its next batch (one model batch at a time).
            max_concurrent_batches=max_batch_size,
        )
        async def generate_batch(self, batch: list[PreparedChat]) -> list[Completion]:
            # The model runs in a thread: the event loop keeps serving /health and /v1/models.
            return list(await asyncio.gather(*(self.batcher.submit(item) for item in batch)))

    # The decorators made the class a Serve Deployment (mypy still sees the class).
    deployment: Any = LocalModelServer
    application: Application = deployment.bind()
    return application


def _absolute(path: str | None) -> str | None:
    """A configured model path made absolute here: a replica's working directory may differ."""
    if not path:
        return None
    return str(Path(path).expanduser().resolve())


def __getattr__(name: str) -> Any:
    """`inference.server.serve:app` for `serve run` / a RayService: built from the environment's
    settings when first asked for."""
    if name == "app":
        from core.config import get_settings

        return build_app(get_settings())
    raise AttributeError(name)
