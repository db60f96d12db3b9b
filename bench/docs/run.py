"""Documentation benchmark: `python -m bench.docs.run` (or `make bench`).

SmolLM2-135M-Instruct on the CPU, measured two ways on the same machine in the same run, each
figure printed beside its baseline:

- one `function_doc` job on bench/docs/sample_access_log.py (300 lines, 12 functions without
  docstrings: 12 model calls) end to end, from `POST /api/v1/docs/jobs` to the `GET` that says
  `completed` (polled every 0.1 s), on the whole stack as real processes: `hivesync api`, the
  Temporal dev server, a cpu_tasks worker, a gpu_tasks worker and `hivesync inference` (Ray
  Serve), on a Postgres database and a Redis key prefix of their own; versus the same prompts
  (`plan_tasks` for that file) sent straight to the model in this process with `LocalModel`:
  the same model folder, the same torch thread count as the Ray replica, and the grouping the
  pipeline gets (the workflow runs DOCS_MAX_CONCURRENCY = 4 calls at a time, the replica batches
  concurrent calls): the 12 prompts in batches of 4. All 12 in one batch and one by one are
  measured too, for context. Direct and end-to-end runs are interleaved; each end-to-end run is
  a new job (its file path differs; the prompts do not).
- 8 small `function_doc` jobs (one function of the sample each, so 8 different files) through
  the same stack, all submitted at once versus one after the other: throughput in jobs/s; and,
  for context, their 8 prompts straight to the model in one batch and one by one (what
  batching gains in the model itself).

Medians are reported; tokens/s are completion tokens over wall time. The replica's `/stats`
(batch sizes, time spent generating) and the CPU seconds of each process of the stack
(bench/docs/cpu.py) are read around every end-to-end run, to tell the time in the model from
the time around it. Raw figures go to bench/results/docs.json, the processes'
logs to bench/results/docs-logs/.

Targets: end to end <= 1.15x the direct model time; concurrent throughput >= 1.5x sequential.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from bench.docs import cpu
from bench.stack import InferenceServer, Stack, signed_in_client
from contracts.docs import DocJobType, GenerationTask
from contracts.jobs import TaskQueue
from core.config import Settings
from inference.server.local_model import ChatRequest, Completion, LocalModel
from inference.server.models import model_dir
from inference.server.serve import torch_threads
from services.docs.planning import plan_tasks

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = Path(__file__).resolve().parent / "sample_access_log.py"
FILE_PATH = "access_log.py"
FUNCTIONS = 12
RESULTS = ROOT / "bench" / "results"
LOGS = RESULTS / "docs-logs"
# Where the embedded GGUF model is converted once (as `make dev` does), unless set.
MODEL_CACHE = Path(os.environ.get("INFERENCE_CACHE_DIR", ROOT / ".data" / "models"))

# The stack's settings, stated so that the figures do not depend on the caller's environment:
# the product's defaults, which suit a 2-CPU machine without a GPU. A replica gets half a CPU
# from Ray and one torch thread: a second thread would compete with the API, the workers and
# Ray's own processes for the other core (see the README's Benchmarks section).
STACK_SETTINGS = {
    "LOCAL_AI_ENABLED": "true",
    "DOCS_MAX_CONCURRENCY": "4",
    "INFERENCE_NUM_GPUS": "0",
    "INFERENCE_NUM_CPUS": "0.5",
    "INFERENCE_MIN_REPLICAS": "1",
    "INFERENCE_MAX_REPLICAS": "1",
    "INFERENCE_MAX_BATCH_SIZE": "8",
    "INFERENCE_BATCH_WAIT_S": "0.05",
}
POLL_S = 0.1
JOB_TIMEOUT_S = 300.0

E2E_RATIO_TARGET = 1.15
THROUGHPUT_RATIO_TARGET = 1.5


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- what is documented ---------------------------------------------------------------------


def sample() -> str:
    content = SAMPLE.read_text()
    functions = _functions(content)
    if len(content.splitlines()) != 300 or len(functions) != FUNCTIONS:
        raise SystemExit(f"{SAMPLE} must have 300 lines and {FUNCTIONS} functions")
    return content


def _functions(content: str) -> list[ast.FunctionDef]:
    return [node for node in ast.parse(content).body if isinstance(node, ast.FunctionDef)]


def small_files(content: str, count: int) -> list[str]:
    """Small modules: the sample's imports and constants, and one of its functions each."""
    functions = _functions(content)
    lines = content.splitlines(keepends=True)
    header = "".join(lines[: functions[0].lineno - 1])
    return [
        header + "".join(lines[function.lineno - 1 : function.end_lineno])
        for function in functions[:count]
    ]


def function_doc_tasks(content: str, file_path: str = FILE_PATH) -> list[GenerationTask]:
    return plan_tasks(DocJobType.FUNCTION_DOC, "python", content, file_path=file_path)


def requests_of(tasks: Sequence[GenerationTask]) -> list[ChatRequest]:
    """The tasks as the AI engine sends them to the model (temperature 0, the task's limit)."""
    return [
        ChatRequest(
            messages=[message.model_dump() for message in task.messages],
            max_tokens=task.max_tokens,
            temperature=0.0,
        )
        for task in tasks
    ]


# --- the model in this process --------------------------------------------------------------


def run_direct(model: LocalModel, requests: Sequence[ChatRequest], group: int) -> dict[str, Any]:
    """`requests` in batches of `group`, one batch after the other, as one caller would."""
    completions: list[Completion] = []
    batches = range(0, len(requests), group)
    started = time.perf_counter()
    for first in batches:
        completions += model.generate(requests[first : first + group])
    seconds = time.perf_counter() - started
    return {
        "s": seconds,
        "tokens_out": sum(completion.completion_tokens for completion in completions),
        "tokens_in": sum(completion.prompt_tokens for completion in completions),
        "batch_sizes": dict(Counter(str(len(requests[i : i + group])) for i in batches)),
    }


# --- the service ----------------------------------------------------------------------------


class HiveSync:
    """One account on the running API; submits documentation jobs and waits for them."""

    def __init__(self, base_url: str) -> None:
        self.client = signed_in_client(base_url, timeout_s=60)

    def project(self, name: str) -> str:
        created = self.client.post("/api/v1/projects", json={"name": name})
        created.raise_for_status()
        return str(created.json()["id"])

    def submit(self, project_id: str, file_path: str, content: str) -> str:
        accepted = self.client.post(
            "/api/v1/docs/jobs",
            json={
                "project_id": project_id,
                "job_type": DocJobType.FUNCTION_DOC.value,
                "file_path": file_path,
                "content": content,
            },
        )
        if accepted.status_code != 202:
            raise SystemExit(f"job refused: HTTP {accepted.status_code} {accepted.text[:500]}")
        return str(accepted.json()["job_id"])

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/docs/jobs/{job_id}")
        response.raise_for_status()
        return dict(response.json())

    def wait(self, project_id: str, job_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Poll until every job has ended; the jobs, with their results. One pending job is
        polled with `GET /jobs/{id}`; several with one `GET /jobs?project_id=` per poll (the
        project holds only them), then each finished one is read once for its result."""
        pending, ended = set(job_ids), dict[str, dict[str, Any]]()
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while True:
            if len(pending) == 1:
                job = self.job(next(iter(pending)))
                finished = [job["job_id"]] if _ended(job) else []
                if finished:
                    ended[job["job_id"]] = job
            else:
                listed = self.client.get(
                    "/api/v1/docs/jobs", params={"project_id": project_id, "limit": 100}
                )
                listed.raise_for_status()
                finished = [
                    item["job_id"]
                    for item in listed.json()["items"]
                    if item["job_id"] in pending and _ended(item)
                ]
                ended.update({job_id: self.job(job_id) for job_id in finished})
            pending.difference_update(finished)
            if not pending:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{len(pending)} job(s) still running after {JOB_TIMEOUT_S} s")
            time.sleep(POLL_S)
        jobs = [ended[job_id] for job_id in job_ids]
        for job in jobs:
            if job["status"] != "completed":
                raise SystemExit(f"job {job['job_id']} {job['status']}: {job.get('error')}")
        return jobs

    def close(self) -> None:
        self.client.close()


def _ended(job: dict[str, Any]) -> bool:
    return job["status"] in ("completed", "failed", "cancelled")


def _totals(jobs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    results = [job["result"] for job in jobs]
    providers = {result["provider"] for result in results}
    if providers != {"local"}:
        raise SystemExit(f"answered by {providers}, not only by the local model")
    return {
        "tokens_out": sum(result["tokens_out"] for result in results),
        "tokens_in": sum(result["tokens_in"] for result in results),
        "edits": sum(len(result["edits"]) for result in results),
        "workflow_ms": [result["duration_ms"] for result in results],
        "job_ids": [job["job_id"] for job in jobs],
    }


class Observer:
    """What the stack did around a measurement: the replica's batches and time generating
    (its `/stats`), and the CPU seconds of each part of the stack (see bench/docs/cpu.py)."""

    def __init__(self, stack: Stack, server: InferenceServer) -> None:
        self.server = server
        queues = {worker.name: f"{worker.queue} worker" for worker in stack.workers}
        self.roots = {
            queues.get(name, name): process.pid
            for name, process in stack.processes.items()
            if process.pid is not None
        }

    def reading(self) -> tuple[dict[str, Any], dict[str, float]]:
        seconds = cpu.cpu_seconds(self.roots)
        # This process alone (its children are the stack): the client, polling.
        seconds["bench client"] = time.process_time()
        return self.server.stats(), seconds

    def since(self, before: tuple[dict[str, Any], dict[str, float]]) -> dict[str, Any]:
        """What happened since the reading `before`."""
        stats_before, cpu_before = before
        stats, cpu_after = self.reading()
        sizes = Counter({int(k): v for k, v in stats["batch_sizes"].items()})
        sizes.subtract(Counter({int(k): v for k, v in stats_before["batch_sizes"].items()}))
        return {
            "model_calls": stats["requests"] - stats_before["requests"],
            "batches": stats["batches"] - stats_before["batches"],
            "batch_sizes": {str(size): count for size, count in sorted(sizes.items()) if count},
            "replica_busy_s": stats["busy_s"] - stats_before["busy_s"],
            "cpu_s": cpu.delta(cpu_before, cpu_after),
        }


def run_job(
    hivesync: HiveSync, observer: Observer, project_id: str, file_path: str, content: str
) -> dict[str, Any]:
    """One job end to end: POST, then GET until completed."""
    before = observer.reading()
    started = time.perf_counter()
    job_id = hivesync.submit(project_id, file_path, content)
    jobs = hivesync.wait(project_id, [job_id])
    seconds = time.perf_counter() - started
    return {"s": seconds, **_totals(jobs), **observer.since(before)}


def run_jobs(
    hivesync: HiveSync,
    observer: Observer,
    project_id: str,
    files: dict[str, str],
    *,
    concurrent: bool,
) -> dict[str, Any]:
    """Every file documented: all submitted at once, or each after the last one completed."""
    before = observer.reading()
    started = time.perf_counter()
    if concurrent:
        job_ids = [hivesync.submit(project_id, path, content) for path, content in files.items()]
        jobs = hivesync.wait(project_id, job_ids)
    else:
        jobs = []
        for path, content in files.items():
            jobs += hivesync.wait(project_id, [hivesync.submit(project_id, path, content)])
    seconds = time.perf_counter() - started
    return {
        "s": seconds,
        "jobs_per_s": len(files) / seconds,
        **_totals(jobs),
        **observer.since(before),
    }


# --- the run --------------------------------------------------------------------------------


def start_stack(stack: Stack, root: Path) -> InferenceServer:
    """The API and Temporal, then the model server and both workers, started together (Ray
    and the model load while Metro warms up in the cpu_tasks worker), all ready."""
    stack.start()
    server = stack.start_inference()
    bundler = {"BUNDLER_WORK_DIR": str(root / "bundler"), "BUNDLER_CACHE_DIR": str(root / "metro")}
    workers = [
        stack.launch(stack.worker(TaskQueue.CPU, env=bundler), wait=False),
        # The bench's model server never scales to zero: poll for good while it answers.
        stack.launch(stack.worker(TaskQueue.GPU, env={"INFERENCE_WORKER_IDLE_S": "0"}), wait=False),
    ]
    server.wait_until_ready()
    for worker in workers:
        worker.wait_until_ready()
    return server


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the cleanups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each measurement")
    parser.add_argument("--jobs", type=int, default=8, help="small jobs, at once and one by one")
    parser.add_argument(
        "--no-context", action="store_true", help="skip the direct runs shown for context"
    )
    args = parser.parse_args()
    if not 1 <= args.jobs <= FUNCTIONS:
        raise SystemExit(f"--jobs must be between 1 and {FUNCTIONS}")
    signal.signal(signal.SIGTERM, _terminate)

    content = sample()
    tasks = function_doc_tasks(content)
    other = function_doc_tasks(content, "run-0/" + FILE_PATH)
    if len(tasks) != FUNCTIONS or [t.messages for t in tasks] != [t.messages for t in other]:
        raise SystemExit(f"expected {FUNCTIONS} prompts that do not depend on the file's path")
    # As the stack's processes will see them: this environment, then the stack's settings.
    overrides: dict[str, Any] = {name.lower(): value for name, value in STACK_SETTINGS.items()}
    settings = Settings(_env_file=None, **overrides)
    threads = torch_threads(settings)
    progress(f"locating the model in {MODEL_CACHE} (a first run converts it, ~20 s)...")
    folder = model_dir(None, MODEL_CACHE.resolve())

    RESULTS.mkdir(exist_ok=True)
    shutil.rmtree(LOGS, ignore_errors=True)
    root = Path(tempfile.mkdtemp(prefix="hivesync-bench-docs-"))
    load_before = os.getloadavg()[0]
    stack = Stack(
        root, LOGS, storage=False, env={**STACK_SETTINGS, "LOCAL_AI_MODEL_PATH": str(folder)}
    )
    info: dict[str, Any] = {"model_dir": str(folder), "torch_threads": threads}
    try:
        progress(f"starting the stack (temporary files in {root})...")
        started = time.perf_counter()
        server = start_stack(stack, root)
        info["stack_start_s"] = time.perf_counter() - started
        model = LocalModel.load(folder, num_threads=threads)
        hivesync = HiveSync(stack.base_url)
        observer = Observer(stack, server)
        try:
            results = measure(args, content, tasks, settings, model, observer, hivesync)
        finally:
            hivesync.close()
    finally:
        stack.close()
        shutil.rmtree(root, ignore_errors=True)
    report(args, settings, info, results, (load_before, os.getloadavg()[0]))


def measure(
    args: argparse.Namespace,
    content: str,
    tasks: list[GenerationTask],
    settings: Settings,
    model: LocalModel,
    observer: Observer,
    hivesync: HiveSync,
) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {
        name: []
        for name in (
            "direct", "end_to_end", "direct_one_batch", "direct_one_by_one",
            "sequential", "concurrent", "direct_small_one_batch", "direct_small_one_by_one",
        )
    }  # fmt: skip
    requests = requests_of(tasks)
    group = settings.docs_max_concurrency
    files = small_files(content, FUNCTIONS)

    # Warm-up, not counted: a small job through the stack, a batch in this process.
    project = hivesync.project("docs bench")
    warm_up = run_job(hivesync, observer, project, "warm-up/module.py", files[-1])
    model.generate(requests[:group])
    progress(f"warm-up job (not counted): {warm_up['s']:.1f} s")

    for index in range(args.runs):
        direct = run_direct(model, requests, group)
        results["direct"].append(direct)
        e2e = run_job(hivesync, observer, project, f"run-{index}/{FILE_PATH}", content)
        results["end_to_end"].append(e2e)
        progress(
            f"12-function job {index + 1}/{args.runs}: direct {direct['s']:.1f} s, end to end "
            f"{e2e['s']:.1f} s (replica generating {e2e['replica_busy_s']:.1f} s, batches "
            f"{batches_text(e2e['batch_sizes'])})"
        )
    small = files[: args.jobs]
    if not args.no_context:
        for name, size in (("direct_one_batch", len(requests)), ("direct_one_by_one", 1)):
            results[name].append(run_direct(model, requests, size))
            progress(f"{name}: {results[name][-1]['s']:.1f} s")
        # The small jobs' prompts straight to the model: what batching gains in the model.
        prompts = requests_of([task for text in small for task in function_doc_tasks(text)])
        for name, size in (
            ("direct_small_one_batch", len(prompts)),
            ("direct_small_one_by_one", 1),
        ):
            run = run_direct(model, prompts, size)
            results[name].append({**run, "jobs_per_s": len(prompts) / run["s"]})
            progress(f"{name}: {run['s']:.1f} s")
    for index in range(args.runs):
        for mode in ("sequential", "concurrent"):
            project = hivesync.project(f"{mode} {index}")
            named = {f"{mode}-{index}/module_{n}.py": text for n, text in enumerate(small)}
            run = run_jobs(hivesync, observer, project, named, concurrent=mode == "concurrent")
            results[mode].append(run)
            progress(
                f"{args.jobs} small jobs {index + 1}/{args.runs}, {mode}: {run['s']:.1f} s "
                f"(batches {batches_text(run['batch_sizes'])})"
            )
    return results


def batches_text(sizes: dict[str, int]) -> str:
    """{"4": 3} -> "3x4"; {"1": 1, "7": 1} -> "1x1 1x7"."""
    return " ".join(f"{count}x{size}" for size, count in sorted(sizes.items(), key=_size)) or "-"


def _size(item: tuple[str, int]) -> int:
    return int(item[0])


def median(runs: list[dict[str, Any]], key: str) -> float:
    values = [run[key] for run in runs if run.get(key) is not None]
    return float(statistics.median(values)) if values else float("nan")


def tokens_per_s(runs: list[dict[str, Any]]) -> float:
    return median([{"rate": run["tokens_out"] / run["s"]} for run in runs], "rate")


def cpu_table(args: argparse.Namespace, results: dict[str, list[dict[str, Any]]]) -> list[str]:
    """CPU seconds of each part of the stack during a run (medians), beside the wall time."""
    columns = {
        "12-function job": results["end_to_end"],
        f"{args.jobs} at once": results["concurrent"],
        f"{args.jobs} one by one": results["sequential"],
    }
    parts = list(dict.fromkeys(part for run in results["end_to_end"] for part in run["cpu_s"]))
    parts.remove(cpu.MACHINE)

    def row(name: str, values: list[float]) -> str:
        return f"  {name:<34}" + "".join(f"{value:>18.1f}" for value in values)

    def cpu_median(runs: list[dict[str, Any]], part: str) -> float:
        return median([{"s": run["cpu_s"].get(part, 0.0)} for run in runs], "s")

    return [
        f"{'CPU seconds during a run (medians)':<36}" + "".join(f"{c:>18}" for c in columns),
        *(row(part, [cpu_median(runs, part) for runs in columns.values()]) for part in parts),
        row(f"{cpu.MACHINE} ({os.cpu_count()} CPUs)",
            [cpu_median(runs, cpu.MACHINE) for runs in columns.values()]),
        row("wall-clock seconds", [median(runs, "s") for runs in columns.values()]),
        row("replica generating, seconds",
            [median(runs, "replica_busy_s") for runs in columns.values()]),
    ]  # fmt: skip


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report(
    args: argparse.Namespace,
    settings: Settings,
    info: dict[str, Any],
    results: dict[str, list[dict[str, Any]]],
    load: tuple[float, float],
) -> None:
    import torch

    e2e, direct = median(results["end_to_end"], "s"), median(results["direct"], "s")
    sequential = median(results["sequential"], "jobs_per_s")
    concurrent = median(results["concurrent"], "jobs_per_s")
    e2e_ratio, throughput_ratio = e2e / direct, concurrent / sequential
    busy = median(results["end_to_end"], "replica_busy_s")
    workflow_s = median([{"s": run["workflow_ms"][0] / 1000} for run in results["end_to_end"]], "s")
    group = settings.docs_max_concurrency
    model_gain = median(results["direct_small_one_by_one"], "s") / median(
        results["direct_small_one_batch"], "s"
    )

    def one_job_row(name: str, runs: list[dict[str, Any]], ratio: str = "") -> str:
        if not runs:
            return f"  {name:<50}{'-':>9}"
        sizes = runs[len(runs) // 2]["batch_sizes"]
        return (
            f"  {name:<50}{median(runs, 's'):>9.1f}{tokens_per_s(runs):>10.1f}"
            f"{batches_text(sizes):>11}{ratio:>8}"
        )

    def small_jobs_row(name: str, runs: list[dict[str, Any]]) -> str:
        if not runs:
            return f"  {name:<50}{'-':>9}"
        sizes = runs[len(runs) // 2]["batch_sizes"]
        return (
            f"  {name:<50}{median(runs, 's'):>9.1f}{median(runs, 'jobs_per_s'):>10.2f}"
            f"{tokens_per_s(runs):>10.1f}  {batches_text(sizes)}"
        )

    tokens_e2e = [run["tokens_out"] for run in results["end_to_end"]]
    tokens_direct = [run["tokens_out"] for run in results["direct"]]
    lines = [
        "",
        f"Docs benchmark: function_doc, SmolLM2-135M-Instruct on the CPU (torch "
        f"{torch.__version__}), {os.cpu_count()} CPUs",
        f"Ray replica and direct model: {info['torch_threads']} torch thread(s), the same "
        f"folder; replica: {settings.inference_num_cpus} CPU, batches of up to "
        f"{settings.inference_max_batch_size} (wait {settings.inference_batch_wait_s} s); "
        f"{group} model calls per job at once",
        f"medians of {args.runs} runs, interleaved; end to end = POST /api/v1/docs/jobs -> GET "
        f"(every {POLL_S} s) until completed",
        f"1-minute load average before the run: {load[0]:.2f} (other work skews the figures)",
        "",
        f"{'300-line file, 12 functions: 12 model calls':<52}{'seconds':>9}{'tokens/s':>10}"
        f"{'batches':>11}{'ratio':>8}",
        one_job_row(
            "end to end: API, Temporal, workers, Ray Serve", results["end_to_end"],
            f"{e2e_ratio:.2f}",
        ),
        one_job_row(f"direct: LocalModel.generate, batches of {group}", results["direct"]),
        one_job_row("direct, for context: all 12 in one batch", results["direct_one_batch"]),
        one_job_row("direct, for context: one by one", results["direct_one_by_one"]),
        f"  end to end, the replica generated for {busy:.1f} s; the workflow took "
        f"{workflow_s:.1f} s from request to stored result",
        f"  completion tokens per run: end to end {tokens_e2e}, direct {tokens_direct}",
        "",
        f"{f'{args.jobs} small jobs (function_doc, one function each)':<52}{'seconds':>9}"
        f"{'jobs/s':>10}{'tokens/s':>10}  batches",
        small_jobs_row(f"all {args.jobs} submitted at once", results["concurrent"]),
        small_jobs_row("one after the other", results["sequential"]),
        small_jobs_row(
            f"direct, for context: the {args.jobs} prompts in one batch",
            results["direct_small_one_batch"],
        ),
        small_jobs_row("direct, for context: one by one", results["direct_small_one_by_one"]),
        f"  batching in the model alone: one batch / one by one throughput {model_gain:.2f}",
        "",
        *cpu_table(args, results),
        "",
        f"  end to end / direct: {e2e_ratio:.2f}  (target <= {E2E_RATIO_TARGET:.2f}: "
        f"{verdict(e2e_ratio <= E2E_RATIO_TARGET)})",
        f"  concurrent / sequential throughput: {throughput_ratio:.2f}  (target >= "
        f"{THROUGHPUT_RATIO_TARGET:.2f}: {verdict(throughput_ratio >= THROUGHPUT_RATIO_TARGET)})",
        "",
    ]  # fmt: skip
    print("\n".join(line.rstrip() for line in lines))
    (RESULTS / "docs.json").write_text(
        json.dumps(
            {
                "runs": results,
                "medians": {
                    "end_to_end_s": e2e,
                    "direct_s": direct,
                    "direct_one_batch_s": median(results["direct_one_batch"], "s"),
                    "direct_one_by_one_s": median(results["direct_one_by_one"], "s"),
                    "end_to_end_replica_busy_s": busy,
                    "end_to_end_workflow_s": workflow_s,
                    "end_to_end_tokens_per_s": tokens_per_s(results["end_to_end"]),
                    "direct_tokens_per_s": tokens_per_s(results["direct"]),
                    "sequential_jobs_per_s": sequential,
                    "concurrent_jobs_per_s": concurrent,
                    "sequential_tokens_per_s": tokens_per_s(results["sequential"]),
                    "concurrent_tokens_per_s": tokens_per_s(results["concurrent"]),
                    "direct_small_one_batch_s": median(results["direct_small_one_batch"], "s"),
                    "direct_small_one_by_one_s": median(results["direct_small_one_by_one"], "s"),
                },
                "end_to_end_ratio": e2e_ratio,
                "throughput_ratio": throughput_ratio,
                "model_batching_gain": model_gain,
                "targets": {
                    "end_to_end_ratio_max": E2E_RATIO_TARGET,
                    "throughput_ratio_min": THROUGHPUT_RATIO_TARGET,
                },
                "met": {
                    "end_to_end": e2e_ratio <= E2E_RATIO_TARGET,
                    "throughput": throughput_ratio >= THROUGHPUT_RATIO_TARGET,
                },
                "settings": STACK_SETTINGS,
                **info,
                "cpus": os.cpu_count(),
                "torch": torch.__version__,
                "load_average_before_after": load,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
