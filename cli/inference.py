"""`hivesync inference`: the local model on Ray Serve, on a Ray started here for this process.

Ray runs on loopback (one exception, see `_ray_environment`), without its dashboard UI, usage
reporting or token auth (RAY_AUTH_MODE=disabled), with its logs under
INFERENCE_RAY_DIR/session_latest/logs; this process logs to LOG_DIR/hivesync-inference.log.
The OpenAI-compatible API answers at http://INFERENCE_HOST:INFERENCE_PORT/v1 once a replica has
loaded the model. SIGINT or SIGTERM shuts Serve down, then Ray, leaving no process behind.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from core.config import Settings
from core.logging import configure_logging, flush_logging
from inference.server.models import offline_mode

log = logging.getLogger("hivesync.inference")

# Ray's shared-memory object store: requests and answers are small, and nothing else is put
# there, so the minimum Ray accepts (75 MiB) plus some room.
OBJECT_STORE_BYTES = 128 * 1024 * 1024


@dataclass(frozen=True)
class InferenceOptions:
    host: str
    port: int
    num_cpus: int  # what Ray may schedule on this machine
    ray_dir: Path


def _ray_environment() -> None:
    """Before Ray is imported: no token auth (loopback only), no usage reporting, and nothing
    downloaded by the model libraries in any Ray process (they inherit this environment)."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Ray's switch for a one-machine cluster: its node address becomes 127.0.0.1, so GCS, the
    # raylet and the workers listen on loopback (the name dates from when only Windows and
    # macOS defaulted to it). Ray Serve's replica-to-replica gRPC port is the exception: Serve
    # 2.60 always binds it to every interface.
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DISABLE_IMPORT_WARNING", "1")
    offline_mode()


def run_inference_server(settings: Settings, options: InferenceOptions) -> int:
    """Run until SIGINT or SIGTERM; the exit status."""
    configure_logging(settings, service="hivesync-inference")
    _ray_environment()
    stopping = threading.Event()

    def stop(signum: int, _: FrameType | None) -> None:
        if not stopping.is_set():
            stopping.set()
            # While Ray and Serve start, a signal interrupts the start.
            raise KeyboardInterrupt(signal.Signals(signum).name)

    started = time.monotonic()
    import ray
    from ray import serve

    from inference.server.serve import APP_NAME, build_app

    try:
        ray.init(
            address="local",
            num_cpus=options.num_cpus,
            num_gpus=None if settings.inference_num_gpus > 0 else 0,
            include_dashboard=False,
            _temp_dir=str(options.ray_dir),
            object_store_memory=OBJECT_STORE_BYTES,
            log_to_driver=False,
            namespace=APP_NAME,
        )
        # ray.init installs its own SIGTERM handler; ours replaces it.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, stop)
        serve.start(http_options={"host": options.host, "port": options.port})
        serve.run(build_app(settings), name=APP_NAME, route_prefix="/", blocking=False)
        log.info(
            "inference server ready",
            extra={
                "base_url": f"http://{options.host}:{options.port}/v1",
                "model": settings.local_ai_model,
                "seconds": round(time.monotonic() - started, 1),
                "ray_logs": str(options.ray_dir / "session_latest" / "logs"),
            },
        )
        while not stopping.wait(timeout=1.0):
            pass
    except KeyboardInterrupt:
        pass
    except Exception:
        log.exception("inference server failed")
        return 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not leave Ray half-stopped
        log.info("inference server stopping")
        _shutdown()
        log.info("inference server stopped")
        flush_logging()
    return 0


def _shutdown() -> None:
    import ray
    from ray import serve

    if not ray.is_initialized():
        return
    if _ray_intact():
        try:
            serve.shutdown()  # replicas finish their batches, the proxy drains
        except Exception:
            log.exception("Serve did not shut down cleanly")
    else:
        log.warning("Ray's own processes are already gone; stopping what is left")
    ray.shutdown()


def _ray_intact(grace_s: float = 0.5) -> bool:
    """Whether the GCS, raylet and the other processes this node started still run.

    A signal sent to the whole process group (`kill -TERM -- -PGID`) reaches them as well as
    this process; Serve's shutdown would then wait ~30 s on RPCs that cannot answer. Ray has no
    public call for this, hence the guarded private one; the grace lets such a signal land.
    """
    import ray

    node = getattr(getattr(ray, "_private", None), "worker", None)
    node = getattr(node, "_global_node", None)
    check = getattr(node, "remaining_processes_alive", None)
    if check is None:
        return True
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not check():
            return False
        time.sleep(0.05)
    return bool(check())


def default_options(settings: Settings) -> InferenceOptions:
    return InferenceOptions(
        host=settings.inference_host,
        port=settings.inference_port,
        num_cpus=len(os.sched_getaffinity(0)),
        ray_dir=settings.inference_ray_dir,
    )
