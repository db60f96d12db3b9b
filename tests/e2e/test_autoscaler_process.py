"""`hivesync autoscaler` as a real process: dry-run without a cluster serves its state and stops
on SIGTERM; without a cluster and not in dry-run it refuses to start, saying why."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.fixtures.autoscaler import autoscaler_env, start_autoscaler

pytestmark = pytest.mark.e2e


def test_dry_run_without_a_cluster_serves_its_state_and_stops_on_sigterm(
    tmp_path: Path, temporal_address: str
) -> None:
    output = tmp_path / "autoscaler.out"
    process, base_url = start_autoscaler(
        tmp_path,
        output,
        TEMPORAL_ADDRESS=temporal_address,
        TEMPORAL_TASK_QUEUE_PREFIX="autoscaler-e2e-",
        AUTOSCALER_MIN_REPLICAS="1",
    )
    try:
        status = httpx.get(f"{base_url}/status").json()
        assert status["dry_run"] is True
        assert status["cluster"] is False
        assert "without a cluster" in status["note"]
        assert status["last_evaluation_ok"] is True, status["last_error"]
        # Nothing waits: the policy holds at its minimum, where a cluster-less run starts.
        assert (status["current"], status["desired"]) == (1, 1)
        assert status["sensors"]["backlog"] == 0
        assert "autoscaler-e2e-gpu_tasks" in status["sensors"]["queues"]
        metrics = httpx.get(f"{base_url}/metrics").text
        assert "hivesync_autoscaler_desired_replicas 1.0" in metrics
        assert 'hivesync_autoscaler_queue_backlog{task_queue="autoscaler-e2e-gpu_tasks"}' in (
            metrics
        )

        assert process.process is not None
        process.process.send_signal(signal.SIGTERM)
        assert process.process.wait(timeout=20) == 0
    finally:
        process.stop()

    lines = [json.loads(line) for line in output.read_text().splitlines() if line.startswith("{")]
    assert all(line["service"] == "hivesync-autoscaler" for line in lines)
    messages = [line["message"] for line in lines]
    assert "autoscaler configured" in messages
    assert "autoscaler decision" in messages
    assert messages[-1] == "autoscaler stopped"


def test_no_cluster_and_no_dry_run_refuses_to_start(tmp_path: Path) -> None:
    env = autoscaler_env(
        tmp_path, TEMPORAL_ADDRESS="127.0.0.1:1", KUBECONFIG=str(tmp_path / "missing")
    )
    done = subprocess.run(
        [sys.executable, "-m", "cli", "autoscaler"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "no Kubernetes cluster configured" in done.stdout
    assert "AUTOSCALER_DRY_RUN=true" in done.stdout
    assert done.stderr.startswith("hivesync autoscaler: no Kubernetes cluster configured")
