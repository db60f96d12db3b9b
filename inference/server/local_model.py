"""The local model: a tokenizer and a causal LM loaded with transformers, generating answers to
a batch of chat conversations at once.

A batch is left-padded and decoded together, step by step, until every conversation has hit
the end of its turn, its own `max_tokens`, or one of its stop strings. Greedy decoding
(temperature 0) and sampling (temperature > 0, with top_p) may be mixed in one batch: each row
is scored with its own settings, and a greedy row gives exactly the answer it would alone.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import transformers
from jinja2 import TemplateError
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)

from inference.server.models import model_dir, offline_mode

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from core.config import Settings

log = logging.getLogger("hivesync.inference.local_model")

FinishReason = Literal["stop", "length"]

# When a request does not say how long its answer may be.
DEFAULT_MAX_TOKENS = 512
# When the model's config does not say how long its context is.
FALLBACK_CONTEXT_TOKENS = 2048


class InvalidRequestError(ValueError):
    """A request the model cannot serve as asked (the caller's fault: HTTP 400)."""

    code = "invalid_request"


class ContextLengthExceededError(InvalidRequestError):
    code = "context_length_exceeded"


@dataclass(frozen=True)
class ChatRequest:
    """One conversation to answer. `messages` are `{"role": ..., "content": ...}` mappings."""

    messages: Sequence[Mapping[str, str]]
    max_tokens: int | None = None  # None: DEFAULT_MAX_TOKENS, within the context
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    stop: Sequence[str] = ()


@dataclass(frozen=True)
class PreparedChat:
    """A checked request: its prompt tokenized (chat template applied), its limits resolved."""

    prompt_ids: tuple[int, ...]
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason
    # How many conversations were generated together with this one (itself included).
    batch_size: int = 1


def available_cpus() -> int:
    return len(os.sched_getaffinity(0))


def default_device() -> str:
    """The GPU when this process sees one (under Ray Serve: when the replica was given one,
    INFERENCE_NUM_GPUS > 0), else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def model_dtype(device: str | torch.device, *, bf16_supported: bool | None = None) -> torch.dtype:
    """The weights' precision on a device.

    - CPU (and any device but CUDA): float32. Half precision is slower there (few CPUs compute
      in it natively) and its rounding would change greedy answers.
    - GPU: half precision, half the memory and bandwidth of float32 (decoding is bound by
      memory bandwidth). bfloat16 where the GPU computes in it (compute capability 8.0 and up:
      A100, L4, H100...): it has float32's exponent range, so the activations of models trained
      in bfloat16 (Llama, SmolLM2) do not overflow as they can in float16; float16 on older
      GPUs (T4, V100), where bfloat16 would be emulated.

    `bf16_supported` is asked of the current CUDA device when not given (natively, not
    emulated: torch would otherwise say yes on a T4).
    """
    if torch.device(device).type != "cuda":
        return torch.float32
    if bf16_supported is None:
        bf16_supported = torch.cuda.is_bf16_supported(including_emulation=False)
    return torch.bfloat16 if bf16_supported else torch.float16


class LocalModel:
    """A loaded model. `generate` is thread-safe: batches run one at a time."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        source: Path | None = None,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        load_seconds: float = 0.0,
    ) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(f"the tokenizer of {source or 'the model'} has no chat template")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.source = source
        self.default_max_tokens = default_max_tokens
        self.load_seconds = load_seconds
        self.device = next(model.parameters()).device
        self.eos_token_ids = _eos_token_ids(model, tokenizer)
        self.pad_token_id: int = tokenizer.pad_token_id
        self.max_context = _context_tokens(model, tokenizer)
        self._lock = threading.Lock()  # one batch at a time
        # Requests are tokenized in other threads while a batch decodes: transformers' tokenizer
        # wrapper may reconfigure the Rust tokenizer on a call, which must not overlap another.
        self._tokenizer_lock = threading.RLock()

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        *,
        cache_dir: Path = Path(".data/models"),
        num_threads: int | None = None,
        device: str | None = None,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
    ) -> LocalModel:
        """Load a transformers folder or a GGUF file (converted once into `cache_dir`); None is
        the embedded SmolLM2. Torch uses `num_threads` threads (default: every CPU given to
        this process); the model goes to `device` (default: the GPU when there is one)."""
        offline_mode()
        transformers.utils.logging.disable_progress_bar()
        started = time.perf_counter()
        torch.set_num_threads(num_threads or available_cpus())
        device = device or default_device()
        dtype = model_dtype(device)
        folder = model_dir(path, cache_dir)
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            str(folder), local_files_only=True, dtype=dtype
        ).to(device)
        loaded = cls(
            model,
            tokenizer,
            source=folder,
            default_max_tokens=default_max_tokens,
            load_seconds=time.perf_counter() - started,
        )
        log.info(
            "model loaded",
            extra={
                "model_dir": str(folder),
                "device": device,
                "dtype": str(dtype).removeprefix("torch."),
                "threads": torch.get_num_threads(),
                "seconds": round(loaded.load_seconds, 2),
            },
        )
        return loaded

    @classmethod
    def from_settings(cls, settings: Settings, *, num_threads: int | None = None) -> LocalModel:
        """The model of LOCAL_AI_MODEL_PATH (or the embedded one), GGUF cache in
        INFERENCE_CACHE_DIR, INFERENCE_TORCH_THREADS threads unless given here."""
        return cls.load(
            settings.local_ai_model_path,
            cache_dir=settings.inference_cache_dir,
            num_threads=num_threads or settings.inference_torch_threads,
        )

    # --- requests ------------------------------------------------------------------------------

    def prompt_ids(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """The conversation through the chat template, ending with the assistant's turn."""
        with self._tokenizer_lock:
            try:
                prompt = self.tokenizer.apply_chat_template(
                    [dict(message) for message in messages],
                    add_generation_prompt=True,
                    tokenize=False,
                )
            except TemplateError as error:  # e.g. "roles must alternate user/assistant"
                raise InvalidRequestError(f"the model's chat template refused: {error}") from error
            ids: list[int] = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        return ids

    def decode(self, tokens: Sequence[int]) -> str:
        with self._tokenizer_lock:
            text: str = self.tokenizer.decode(list(tokens), skip_special_tokens=True)
        return text

    def prepare(self, request: ChatRequest) -> PreparedChat:
        """Tokenize and check a request; raises InvalidRequestError when it cannot be served."""
        if not request.messages:
            raise InvalidRequestError("messages must not be empty")
        if request.temperature < 0 or not 0 < request.top_p <= 1:
            raise InvalidRequestError("temperature must be >= 0 and top_p in (0, 1]")
        if request.max_tokens is not None and request.max_tokens < 1:
            raise InvalidRequestError("max_tokens must be at least 1")
        prompt = self.prompt_ids(request.messages)
        room = self.max_context - len(prompt)
        if room < (request.max_tokens or 1):
            raise ContextLengthExceededError(
                f"this model's context is {self.max_context} tokens; the messages take "
                f"{len(prompt)} and {request.max_tokens or 1} more were asked for"
            )
        return PreparedChat(
            prompt_ids=tuple(prompt),
            max_tokens=request.max_tokens or min(self.default_max_tokens, room),
            temperature=request.temperature,
            top_p=request.top_p,
            stop=tuple(stop for stop in request.stop if stop),
        )

    # --- generation ----------------------------------------------------------------------------

    def generate(self, requests: Sequence[ChatRequest | PreparedChat]) -> list[Completion]:
        """Answer several conversations in one batch; results in the order of the requests."""
        batch = [
            item if isinstance(item, PreparedChat) else self.prepare(item) for item in requests
        ]
        if not batch:
            return []
        with self._lock, torch.inference_mode():
            return self._generate(batch)

    def generate_one(self, request: ChatRequest | PreparedChat) -> Completion:
        return self.generate([request])[0]

    def _generate(self, batch: list[PreparedChat]) -> list[Completion]:
        width = max(len(item.prompt_ids) for item in batch)
        padding = [width - len(item.prompt_ids) for item in batch]
        input_ids = torch.tensor(
            [
                [self.pad_token_id] * pad + list(item.prompt_ids)
                for item, pad in zip(batch, padding, strict=True)
            ],
            device=self.device,
        )
        attention_mask = torch.tensor(
            [
                [0] * pad + [1] * len(item.prompt_ids)
                for item, pad in zip(batch, padding, strict=True)
            ],
            device=self.device,
        )
        sampling = any(item.temperature > 0 for item in batch)
        limits = _RowLimits(self, batch, prompt_width=width)
        processors = LogitsProcessorList([_RowSampling(batch, self.device)] if sampling else [])
        output = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            generation_config=self._generation_config(
                max_new_tokens=max(item.max_tokens for item in batch), sampling=sampling
            ),
            logits_processor=processors,
            stopping_criteria=StoppingCriteriaList([limits]),
        )
        generated: list[list[int]] = output[:, width:].tolist()
        return [
            self._completion(item, tokens[: limits.lengths[row] or item.max_tokens], len(batch))
            for row, (item, tokens) in enumerate(zip(batch, generated, strict=True))
        ]

    def _generation_config(self, *, max_new_tokens: int, sampling: bool) -> GenerationConfig:
        # Every sampling knob neutral: _RowSampling applies each row's own temperature and top_p
        # (and keeps greedy rows greedy), whatever the model's generation_config suggests.
        neutral: dict[str, Any] = {"temperature": 1.0, "top_p": 1.0, "top_k": 0} if sampling else {}
        return GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=sampling,
            num_beams=1,
            eos_token_id=sorted(self.eos_token_ids),
            pad_token_id=self.pad_token_id,
            **neutral,
        )

    def _completion(self, item: PreparedChat, tokens: list[int], batch_size: int) -> Completion:
        finish: FinishReason = "length"
        content = tokens
        for index, token in enumerate(tokens):
            if token in self.eos_token_ids:
                tokens, content, finish = tokens[: index + 1], tokens[:index], "stop"
                break
        text = self.decode(content)
        cut = _first_stop(text, item.stop)
        if cut is not None:
            text, finish = text[:cut], "stop"
        return Completion(
            text=text,
            prompt_tokens=len(item.prompt_ids),
            completion_tokens=len(tokens),
            finish_reason=finish,
            batch_size=batch_size,
        )


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    found = [index for index in (text.find(stop) for stop in stops) if index >= 0]
    return min(found) if found else None


def _eos_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    """The tokens that end the assistant's turn: the generation config's and the tokenizer's."""
    ids: set[int] = set()
    configured = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(int(token) for token in configured)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    if not ids:
        raise ValueError("the model has no end-of-sequence token")
    return frozenset(ids)


def _context_tokens(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> int:
    configured = getattr(model.config, "max_position_embeddings", None)
    if isinstance(configured, int) and configured > 0:
        return configured
    from_tokenizer = getattr(tokenizer, "model_max_length", None)
    if isinstance(from_tokenizer, int) and 0 < from_tokenizer < 1_000_000:
        return from_tokenizer
    return FALLBACK_CONTEXT_TOKENS


@dataclass
class _RowLimits(StoppingCriteria):  # type: ignore[misc]
    """Stops each row on its own: at an end-of-turn token, at its max_tokens, or once its text
    holds one of its stop strings. Remembers how many tokens each row had produced then."""

    model: LocalModel
    batch: list[PreparedChat]
    prompt_width: int
    lengths: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.lengths = [0] * len(self.batch)

    def __call__(
        self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any
    ) -> torch.Tensor:
        produced = input_ids.shape[1] - self.prompt_width
        done = torch.zeros(len(self.batch), dtype=torch.bool, device=input_ids.device)
        for row, item in enumerate(self.batch):
            if self.lengths[row]:
                done[row] = True
                continue
            last = int(input_ids[row, -1])
            finished = produced >= item.max_tokens or last in self.model.eos_token_ids
            if not finished and item.stop:
                text = self.model.decode(input_ids[row, self.prompt_width :].tolist())
                finished = _first_stop(text, item.stop) is not None
            if finished:
                self.lengths[row] = produced
                done[row] = True
        return done


class _RowSampling(LogitsProcessor):  # type: ignore[misc]
    """Each row's own temperature and top_p; a greedy row keeps only its best token, so that
    sampling it can give nothing else."""

    def __init__(self, batch: list[PreparedChat], device: torch.device) -> None:
        self.greedy = torch.tensor([item.temperature == 0 for item in batch], device=device)
        self.temperature = torch.tensor(
            [item.temperature or 1.0 for item in batch], device=device
        ).unsqueeze(1)
        self.top_p = torch.tensor([item.top_p for item in batch], device=device).unsqueeze(1)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = scores / self.temperature
        # Nucleus: drop the tokens after the smallest set whose probability reaches top_p
        # (rows with top_p 1 keep every token, whatever the rounding of the sums).
        ordered, order = scores.sort(dim=-1, descending=True)
        probabilities = ordered.softmax(dim=-1)
        before = probabilities.cumsum(dim=-1) - probabilities
        drop_sorted = (before >= self.top_p) & (self.top_p < 1)
        drop = drop_sorted.scatter(1, order, drop_sorted)
        # Greedy rows: everything but the best token.
        best = scores.argmax(dim=-1, keepdim=True)
        not_best = torch.ones_like(drop).scatter(1, best, False)
        drop = torch.where(self.greedy.unsqueeze(1), not_best, drop)
        return scores.masked_fill(drop, float("-inf"))
