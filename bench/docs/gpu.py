"""The local model on whatever device this machine has: `python -m bench.docs.gpu`.

Loads the model as a replica would (`LocalModel.load`: CUDA in half precision when a GPU is
visible, float32 on the CPU; see inference/server/local_model.py) and measures decoding
throughput and how it scales with the batch: batches of 1, 2, 4, 8 and 16 documentation prompts
(the `function_doc` prompts of bench/docs/sample_access_log.py, repeated past its 12), greedy,
each answer capped at --max-tokens so that every row does about the same work. Each batch size
runs --runs times after one warm-up batch; medians are reported.

Columns: tokens/s is completion tokens of the whole batch over its wall time (throughput);
per row is that divided by the batch (what one caller sees); scaling is tokens/s over batch 1's.
Raw figures go to bench/results/gpu-DEVICE.json.

The model is the embedded SmolLM2-135M-Instruct (converted once into .data/models, or
INFERENCE_CACHE_DIR) unless --model names a transformers folder or a GGUF file.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from bench.docs.run import (
    MODEL_CACHE,
    RESULTS,
    function_doc_tasks,
    progress,
    requests_of,
    run_direct,
    sample,
)
from core.config import Settings
from inference.server.local_model import (
    ChatRequest,
    LocalModel,
    available_cpus,
    default_device,
    model_dtype,
)
from inference.server.models import model_dir
from inference.server.serve import torch_threads

BATCH_SIZES = (1, 2, 4, 8, 16)


def device_name(device: str) -> str:
    """What the figures were measured on, in words."""
    if torch.device(device).type == "cuda":
        properties = torch.cuda.get_device_properties(torch.device(device))
        memory_gib = properties.total_memory / 2**30
        return (
            f"{properties.name} (compute capability {properties.major}.{properties.minor}, "
            f"{memory_gib:.0f} GiB), CUDA {torch.version.cuda}"
        )
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or platform.machine(),
    )
    return f"{model}, {torch.get_num_threads()} torch threads of {available_cpus()} CPUs"


def prompts(count: int, max_tokens: int | None) -> list[ChatRequest]:
    """`count` documentation prompts: the sample's, repeated as needed."""
    base = requests_of(function_doc_tasks(sample()))
    chosen = [base[index % len(base)] for index in range(count)]
    if max_tokens:
        chosen = [replace(request, max_tokens=max_tokens) for request in chosen]
    return chosen


def measure(
    model: LocalModel, batch_sizes: list[int], runs: int, max_tokens: int | None
) -> list[dict[str, Any]]:
    requests = prompts(max(batch_sizes), max_tokens)
    progress("warm-up batch...")
    run_direct(model, requests[:1], group=1)
    rows = []
    for size in batch_sizes:
        results = []
        for run in range(runs):
            progress(f"batch {size}, run {run + 1}/{runs}...")
            results.append(run_direct(model, requests[:size], group=size))
        seconds = statistics.median(result["s"] for result in results)
        tokens_out = statistics.median(result["tokens_out"] for result in results)
        rows.append(
            {
                "batch": size,
                "runs": results,
                "s": seconds,
                "tokens_out": tokens_out,
                "tokens_per_s": tokens_out / seconds,
            }
        )
    return rows


def table(rows: list[dict[str, Any]]) -> list[str]:
    single = rows[0]["tokens_per_s"] if rows and rows[0]["batch"] == 1 else None
    lines = [
        "| batch | tokens out | seconds | tokens/s | per row | scaling vs batch 1 |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        scaling = f"{row['tokens_per_s'] / single:.2f}x" if single else "-"
        lines.append(
            f"| {row['batch']} | {row['tokens_out']:.0f} | {row['s']:.2f} "
            f"| {row['tokens_per_s']:.1f} | {row['tokens_per_s'] / row['batch']:.1f} "
            f"| {scaling} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", help="cuda, cuda:N or cpu (default: cuda when available)")
    parser.add_argument("--model", help="a transformers folder or .gguf file (default: SmolLM2)")
    parser.add_argument(
        "--batches",
        default=",".join(map(str, BATCH_SIZES)),
        help="batch sizes, comma-separated (default: %(default)s)",
    )
    parser.add_argument("--runs", type=int, default=3, help="timed runs per batch size")
    parser.add_argument(
        "--max-tokens", type=int, default=64, help="answer cap per row; 0: the prompts' own"
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads on the CPU (default: a replica's, INFERENCE_TORCH_THREADS or "
        "INFERENCE_NUM_CPUS rounded up: 1 unless set). More threads than idle cores make "
        "decoding slower, not faster: measured 0.5 tokens/s with 2 threads on 2 busy cores, "
        "12 with 1",
    )
    args = parser.parse_args()
    batch_sizes = sorted({int(size) for size in args.batches.split(",")})
    if batch_sizes[0] < 1 or args.runs < 1:
        raise SystemExit("batch sizes and --runs must be at least 1")

    device = args.device or default_device()
    threads = args.threads or torch_threads(Settings(_env_file=None, environment="development"))
    progress(f"locating the model (a first run converts the GGUF file into {MODEL_CACHE})...")
    folder = model_dir(args.model, MODEL_CACHE.resolve())
    model = LocalModel.load(folder, device=device, num_threads=threads)
    dtype = str(model_dtype(device)).removeprefix("torch.")
    name = device_name(device)
    progress(f"loaded in {model.load_seconds:.1f} s on {name} as {dtype}")
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rows = measure(model, batch_sizes, args.runs, args.max_tokens or None)
    info: dict[str, Any] = {
        "device": device,
        "device_name": name,
        "dtype": dtype,
        "model_dir": str(folder),
        "load_s": model.load_seconds,
        "max_tokens": args.max_tokens or None,
        "torch": torch.__version__,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if torch.device(device).type == "cuda":
        info["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30

    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"gpu-{torch.device(device).type}.json"
    out.write_text(json.dumps({"info": info, "rows": rows}, indent=2) + "\n")
    print(f"Local model: {Path(folder).name} on {name}, {dtype}")
    cap = f"answers capped at {args.max_tokens} tokens" if args.max_tokens else "own limits"
    print(f"greedy, {cap}, median of {args.runs} runs; load {model.load_seconds:.1f} s")
    if "peak_memory_gib" in info:
        print(f"peak GPU memory {info['peak_memory_gib']:.2f} GiB")
    print()
    print("\n".join(table(rows)))
    print(f"\nraw figures: {out}")


if __name__ == "__main__":
    main()
