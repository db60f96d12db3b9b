"""Preview benchmark: `python -m bench.preview.run` (or `make bench`).

Bundles examples/hello-rn for ios in production mode (`--dev false --minify true`) two ways, on
the same machine in the same run, and prints each HiveSync figure beside its baseline:

- the raw `react-native bundle` CLI (bundler/node_modules/.bin, with bundler/metro.config.js):
  cold = an empty cache directory each run; warm = the last cold run's cache, with one source
  file edited in each run (a copy at the same depth: Metro's cache keys are relative paths);
  same sources = the last warm run's sources again;
- HiveSync end to end, from the HTTP request to the ready URL (`POST /api/v1/preview/build?wait=60`
  answering 200 with `url`), on the whole stack as real processes (`hivesync api`, `hivesync
  worker`, Temporal dev server, SeaweedFS, Postgres, Redis): cold = a fresh worker on an empty
  Metro cache each run (started before the request, not timed); warm = one warm worker (started on
  the last cold run's cache, one build done before measuring), one source file edited each run;
  identical = the last warm run's sources again, answered from storage without Metro (checked in
  the worker's log).

Cold runs are interleaved (CLI, HiveSync, CLI, ...), and so are warm ones. The Metro processes'
peak memory (VmHWM) is sampled from /proc while they run; the CLI's is its maxrss. Medians are
reported; raw figures go to bench/results/preview.json, the processes' logs to
bench/results/preview-logs/.

Targets: warm <= 0.5x the raw warm CLI; identical rebuild <= 150 ms; cold <= 1.1x the raw cold
CLI; the bundler's peak memory <= 800 MB.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from bench.preview.stack import MetroWorker, PreviewStack
from bench.stack import signed_in_client

ROOT = Path(__file__).resolve().parents[2]
BUNDLER = ROOT / "bundler"
REACT_NATIVE = BUNDLER / "node_modules" / ".bin" / "react-native"
EXAMPLE = ROOT / "examples" / "hello-rn"
EDITED_FILE = Path("src") / "components" / "Header.js"
RESULTS = ROOT / "bench" / "results"
LOGS = RESULTS / "preview-logs"
MB = 1024 * 1024

WARM_RATIO_TARGET = 0.5
IDENTICAL_MS_TARGET = 150.0
COLD_RATIO_TARGET = 1.1
PEAK_MB_TARGET = 800.0


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def edit(text: str, marker: str) -> str:
    """The edited source file: the title gets a marker (so the bundle is new and checkable)."""
    assert "{title}" in text
    return text.replace("{title}", f"{{title}} {marker}", 1)


def copy_app(destination: Path, marker: str) -> Path:
    shutil.rmtree(destination, ignore_errors=True)
    shutil.copytree(EXAMPLE, destination)
    edited = destination / EDITED_FILE
    edited.write_text(edit(edited.read_text(), marker))
    return destination


def app_files(marker: str) -> dict[str, Any]:
    """The example app as the `files` of a build request, with one file edited."""
    files: dict[str, Any] = {}
    for path in sorted(EXAMPLE.rglob("*")):
        if not path.is_file() or path.name == "README.md":
            continue
        data = path.read_bytes()
        relative = path.relative_to(EXAMPLE).as_posix()
        try:
            files[relative] = data.decode("utf-8")
        except UnicodeDecodeError:
            files[relative] = {"base64": base64.b64encode(data).decode()}
    files[EDITED_FILE.as_posix()] = edit(files[EDITED_FILE.as_posix()], marker)
    return files


def run_cli(app_dir: Path, cache_dir: Path, out_dir: Path, marker: str) -> dict[str, Any]:
    """`react-native bundle` once: wall-clock ms from spawn to exit, and its peak RSS."""
    out_dir.mkdir(parents=True, exist_ok=True)
    bundle = out_dir / "bundle.js"
    command = [str(REACT_NATIVE), "bundle", "--config", str(BUNDLER / "metro.config.js")]
    command += ["--entry-file", str(app_dir / "index.js"), "--platform", "ios"]
    command += ["--dev", "false", "--minify", "true"]
    command += ["--bundle-output", str(bundle), "--assets-dest", str(out_dir / "assets")]
    env = {**os.environ, "HIVESYNC_APP_DIR": str(app_dir), "HIVESYNC_CACHE_DIR": str(cache_dir)}
    with (out_dir / "cli.log").open("wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=BUNDLER, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            _, status, usage = os.wait4(process.pid, 0)
            elapsed_ms = (time.perf_counter() - started) * 1000
            process.returncode = os.waitstatus_to_exitcode(status)
        finally:
            if process.returncode is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    if process.returncode != 0:
        raise SystemExit(f"react-native bundle failed; see {out_dir / 'cli.log'}")
    if marker not in bundle.read_text():
        raise SystemExit(f"the CLI's bundle in {out_dir} lacks the edited source")
    # Linux: the largest of the process and its waited-for descendants, in KiB.
    return {"ms": elapsed_ms, "peak_rss_bytes": usage.ru_maxrss * 1024}


class HiveSync:
    """One account and project on the running API; times build requests."""

    def __init__(self, base_url: str) -> None:
        self.client = signed_in_client(base_url, timeout_s=120)
        project = self.client.post("/api/v1/projects", json={"name": "preview bench"})
        project.raise_for_status()
        self.project_id = str(project.json()["id"])

    def build(self, files: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        """POST /api/v1/preview/build?wait=60 until the answer with the URL: (ms, answer)."""
        body = {
            "project_id": self.project_id,
            "target_platform": "ios",
            "entry_file": "index.js",
            "environment": "production",
            "files": files,
        }
        started = time.perf_counter()
        response = self.client.post("/api/v1/preview/build?wait=60", json=body)
        elapsed_ms = (time.perf_counter() - started) * 1000
        if response.status_code != 200 or "url" not in response.json():
            raise SystemExit(f"build not ready: HTTP {response.status_code} {response.text[:500]}")
        return elapsed_ms, dict(response.json())

    def check_bundle(self, answer: dict[str, Any], marker: str) -> None:
        """The signed URL serves the bundle of these sources (not timed)."""
        download = httpx.get(answer["url"], timeout=30)
        download.raise_for_status()
        if marker not in download.text:
            raise SystemExit(f"build {answer['build_id']}'s bundle lacks the edited source")

    def close(self) -> None:
        self.client.close()


def timed_build(
    hivesync: HiveSync, worker: MetroWorker, marker: str, *, expect_metro: bool
) -> dict[str, Any]:
    """One end-to-end build of the example app edited with `marker`; with the Metro time the
    worker logged for it, and a check that Metro ran (or did not)."""
    before = len(worker.bundles())
    ms, answer = hivesync.build(app_files(marker))
    bundles = worker.bundles()
    for _ in range(40):  # the worker's log line may land a moment after the answer
        if not expect_metro or len(bundles) > before:
            break
        time.sleep(0.05)
        bundles = worker.bundles()
    ran = len(bundles) - before
    if ran != (1 if expect_metro else 0):
        raise SystemExit(f"expected {int(expect_metro)} Metro build(s), the worker logged {ran}")
    hivesync.check_bundle(answer, marker)
    run: dict[str, Any] = {"ms": ms, "build_id": answer["build_id"]}
    if expect_metro:
        run["metro_ms"] = bundles[-1].get("metro_ms")
        run["worker_bundle_wall_ms"] = bundles[-1].get("wall_ms")
    return run


def median(runs: list[dict[str, Any]], key: str) -> float:
    values = [run[key] for run in runs if run.get(key) is not None]
    return float(statistics.median(values)) if values else float("nan")


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the cleanups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="cold runs of each")
    parser.add_argument("--warm-runs", type=int, default=7, help="warm and identical runs")
    args = parser.parse_args()
    if not REACT_NATIVE.exists():
        raise SystemExit(f"{REACT_NATIVE} is missing: run `npm ci` in bundler/")
    signal.signal(signal.SIGTERM, _terminate)

    RESULTS.mkdir(exist_ok=True)
    shutil.rmtree(LOGS, ignore_errors=True)
    root = Path(tempfile.mkdtemp(prefix="hivesync-bench-preview-"))
    results: dict[str, list[dict[str, Any]]] = {
        name: []
        for name in (
            "cli_cold", "hivesync_cold", "cli_warm", "hivesync_warm",
            "cli_same_sources", "hivesync_identical", "worker_startup",
        )
    }  # fmt: skip
    load_before = os.getloadavg()[0]
    stack = PreviewStack(root, LOGS)
    try:
        progress(f"starting the stack (temporary files in {root})...")
        stack.start()
        hivesync = HiveSync(stack.base_url)
        try:
            measure(args, root, stack, hivesync, results)
        finally:
            hivesync.close()
    finally:
        stack.close()
        shutil.rmtree(root, ignore_errors=True)
    report(args, results, (load_before, os.getloadavg()[0]))


def measure(
    args: argparse.Namespace,
    root: Path,
    stack: PreviewStack,
    hivesync: HiveSync,
    results: dict[str, list[dict[str, Any]]],
) -> None:
    tag = uuid.uuid4().hex[:6]
    cli_cache = root / "cli" / "cache-0"
    hivesync_cache = root / "hivesync" / "cache-0"
    for index in range(args.runs):
        # CLI cold: its own empty cache; the last one stays as the warm cache.
        cli_cache = root / "cli" / f"cache-{index}"
        marker = f"cli-cold-{index}-{tag}"
        app = copy_app(root / "cli" / f"cold-{index}" / "app", marker)
        cli = run_cli(app, cli_cache, root / "cli" / f"cold-{index}" / "out", marker)
        results["cli_cold"].append(cli)
        if index < args.runs - 1:
            shutil.rmtree(cli_cache, ignore_errors=True)

        # HiveSync cold: a fresh worker on an empty Metro cache, ready before the request.
        hivesync_cache = root / "hivesync" / f"cache-{index}"
        work = root / "hivesync" / f"cold-{index}" / "work"
        started = time.perf_counter()
        worker = stack.start_metro_worker(work, hivesync_cache)
        results["worker_startup"].append({"ms": (time.perf_counter() - started) * 1000})
        try:
            run = timed_build(hivesync, worker, f"hivesync-cold-{index}-{tag}", expect_metro=True)
        finally:
            worker.stop()
        run["bundler_peak_rss_bytes"] = worker.peak_rss_bytes()
        results["hivesync_cold"].append(run)
        shutil.rmtree(work, ignore_errors=True)
        if index < args.runs - 1:
            shutil.rmtree(hivesync_cache, ignore_errors=True)
        progress(
            f"cold {index + 1}/{args.runs}: CLI {cli['ms']:.0f} ms, HiveSync {run['ms']:.0f} ms "
            f"(Metro {run['metro_ms']} ms; bundler peak "
            f"{run['bundler_peak_rss_bytes'] / MB:.0f} MB)"
        )

    # One warm worker on the last cold run's cache, at the same depth as the cold ones'.
    worker = stack.start_metro_worker(root / "hivesync" / "warm" / "work", hivesync_cache)
    try:
        warm_up = timed_build(hivesync, worker, f"hivesync-warm-up-{tag}", expect_metro=True)
        progress(f"warm worker's first build (not counted): {warm_up['ms']:.0f} ms")
        last_app, last_marker, last_files_marker = Path(), "", ""
        for index in range(args.warm_runs):
            last_marker = f"cli-warm-{index}-{tag}"
            last_app = copy_app(root / "cli" / f"warm-{index}" / "app", last_marker)
            out = root / "cli" / f"warm-{index}" / "out"
            cli = run_cli(last_app, cli_cache, out, last_marker)
            results["cli_warm"].append(cli)
            last_files_marker = f"hivesync-warm-{index}-{tag}"
            run = timed_build(hivesync, worker, last_files_marker, expect_metro=True)
            results["hivesync_warm"].append(run)
            progress(
                f"warm {index + 1}/{args.warm_runs}: CLI {cli['ms']:.0f} ms, "
                f"HiveSync {run['ms']:.0f} ms (Metro {run['metro_ms']} ms)"
            )
        for index in range(args.warm_runs):
            out = root / "cli" / f"same-{index}" / "out"
            cli = run_cli(last_app, cli_cache, out, last_marker)
            results["cli_same_sources"].append(cli)
            run = timed_build(hivesync, worker, last_files_marker, expect_metro=False)
            results["hivesync_identical"].append(run)
            progress(
                f"identical {index + 1}/{args.warm_runs}: CLI {cli['ms']:.0f} ms, "
                f"HiveSync {run['ms']:.1f} ms"
            )
    finally:
        worker.stop()
    for run in results["hivesync_warm"] + results["hivesync_identical"]:
        run["bundler_peak_rss_bytes"] = worker.peak_rss_bytes()


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report(
    args: argparse.Namespace,
    results: dict[str, list[dict[str, Any]]],
    load: tuple[float, float],
) -> None:
    cold, cli_cold = median(results["hivesync_cold"], "ms"), median(results["cli_cold"], "ms")
    warm, cli_warm = median(results["hivesync_warm"], "ms"), median(results["cli_warm"], "ms")
    identical = median(results["hivesync_identical"], "ms")
    cli_same = median(results["cli_same_sources"], "ms")
    cold_peak = max(run["bundler_peak_rss_bytes"] for run in results["hivesync_cold"])
    warm_peak = max(run["bundler_peak_rss_bytes"] for run in results["hivesync_warm"])
    cli_cold_peak = max(run["peak_rss_bytes"] for run in results["cli_cold"])
    cli_warm_peak = max(run["peak_rss_bytes"] for run in results["cli_warm"])
    peak_mb = max(cold_peak, warm_peak) / MB
    cold_ratio, warm_ratio = cold / cli_cold, warm / cli_warm
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()

    def row(name: str, ours: float, metro: float | None, baseline: float) -> str:
        metro_text = "-" if metro is None else f"{metro:.0f}"
        return f"  {name:<44}{ours:>10.0f}{metro_text:>10}{baseline:>11.0f}{ours / baseline:>8.2f}"

    lines = [
        "",
        f"Preview benchmark: examples/hello-rn, ios, production (--dev false --minify true); "
        f"{os.cpu_count()} CPUs, node {node}",
        f"medians of {args.runs} cold and {args.warm_runs} warm runs, interleaved; HiveSync = "
        "POST /api/v1/preview/build?wait=60 -> 200 with url",
        f"1-minute load average before the run: {load[0]:.2f} (other work skews the figures)",
        "",
        f"{'time to a ready bundle (ms)':<46}{'HiveSync':>10}{'in Metro':>10}"
        f"{'raw CLI':>11}{'ratio':>8}",
        row("cold: empty cache (HiveSync: fresh worker)", cold,
            median(results["hivesync_cold"], "metro_ms"), cli_cold),
        row("warm: one source file edited", warm,
            median(results["hivesync_warm"], "metro_ms"), cli_warm),
        row("identical rebuild / CLI: same sources again", identical, None, cli_same),
        f"  (a fresh worker took {median(results['worker_startup'], 'ms') / 1000:.1f} s to start "
        "before each cold request, not counted)",
        "",
        f"{'peak memory, MB (VmHWM / maxrss)':<46}{'bundler':>10}{'':>10}{'raw CLI':>11}",
        f"  {'cold build':<44}{cold_peak / MB:>10.0f}{'':>10}{cli_cold_peak / MB:>11.0f}",
        f"  {'warm builds':<44}{warm_peak / MB:>10.0f}{'':>10}{cli_warm_peak / MB:>11.0f}",
        "",
        f"  warm / raw warm CLI: {warm_ratio:.2f}  (target <= {WARM_RATIO_TARGET:.2f}: "
        f"{verdict(warm_ratio <= WARM_RATIO_TARGET)})",
        f"  identical rebuild: {identical:.0f} ms  (target <= {IDENTICAL_MS_TARGET:.0f} ms: "
        f"{verdict(identical <= IDENTICAL_MS_TARGET)})",
        f"  cold / raw cold CLI: {cold_ratio:.2f}  (target <= {COLD_RATIO_TARGET:.2f}: "
        f"{verdict(cold_ratio <= COLD_RATIO_TARGET)})",
        f"  bundler peak memory: {peak_mb:.0f} MB  (target <= {PEAK_MB_TARGET:.0f} MB: "
        f"{verdict(peak_mb <= PEAK_MB_TARGET)})",
        "",
    ]  # fmt: skip
    print("\n".join(lines))
    (RESULTS / "preview.json").write_text(
        json.dumps(
            {
                "runs": results,
                "medians_ms": {
                    "hivesync_cold": cold,
                    "cli_cold": cli_cold,
                    "hivesync_warm": warm,
                    "cli_warm": cli_warm,
                    "hivesync_identical": identical,
                    "cli_same_sources": cli_same,
                },
                "peak_rss_bytes": {
                    "bundler_cold": cold_peak,
                    "bundler_warm": warm_peak,
                    "cli_cold": cli_cold_peak,
                    "cli_warm": cli_warm_peak,
                },
                "warm_ratio": warm_ratio,
                "cold_ratio": cold_ratio,
                "targets": {
                    "warm_ratio_max": WARM_RATIO_TARGET,
                    "identical_ms_max": IDENTICAL_MS_TARGET,
                    "cold_ratio_max": COLD_RATIO_TARGET,
                    "bundler_peak_mb_max": PEAK_MB_TARGET,
                },
                "met": {
                    "warm": warm_ratio <= WARM_RATIO_TARGET,
                    "identical": identical <= IDENTICAL_MS_TARGET,
                    "cold": cold_ratio <= COLD_RATIO_TARGET,
                    "peak_memory": peak_mb <= PEAK_MB_TARGET,
                },
                "cpus": os.cpu_count(),
                "load_average_before_after": load,
                "node": node,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
