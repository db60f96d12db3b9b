"""The local model's OpenAI-compatible server over real HTTP: in process on uvicorn (tiny model
and SmolLM2), and as `hivesync inference` on Ray Serve, started and stopped like an operator
would (select it with `-m e2e` or `-k ray`)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from cli.processes import ManagedProcess, free_port, processes_mentioning
from inference.server.local_model import ChatRequest, LocalModel
from inference.server.openai_app import create_local_app

MODEL = "local"


def completion_body(content: str, **options: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **options}


def root_of(base_url: str) -> str:
    return base_url.removesuffix("/v1")


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir: Path) -> LocalModel:
    """The same model in this process: what the servers' greedy answers must equal."""
    return LocalModel.load(tiny_model_dir)


@pytest.fixture
def client(tiny_model_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=tiny_model_url, timeout=60) as http:
        yield http


def expected_text(model: LocalModel, content: str, max_tokens: int) -> str:
    request = ChatRequest([{"role": "user", "content": content}], max_tokens=max_tokens)
    return model.generate_one(request).text


# --- the in-process app (uvicorn) ---------------------------------------------------------------


def test_health_and_models(client: httpx.Client, tiny_model_url: str) -> None:
    health = httpx.get(root_of(tiny_model_url) + "/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "model": MODEL}

    listed = client.get("/models")
    assert listed.status_code == 200
    body = listed.json()
    assert body["object"] == "list"
    assert [(card["id"], card["object"]) for card in body["data"]] == [(MODEL, "model")]
    assert isinstance(body["data"][0]["created"], int)

    assert client.get(f"/models/{MODEL}").json()["id"] == MODEL
    missing = client.get("/models/gpt-4o")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"


def test_chat_completion_shape(client: httpx.Client, tiny_model: LocalModel) -> None:
    content = "Write a docstring for this function."
    response = client.post(
        "/chat/completions", json=completion_body(content, max_tokens=7, temperature=0)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int)
    assert body["model"] == MODEL
    [choice] = body["choices"]
    assert choice["index"] == 0
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == expected_text(tiny_model, content, 7)
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["prompt_tokens"] == len(
        tiny_model.prompt_ids([{"role": "user", "content": content}])
    )
    assert 1 <= usage["completion_tokens"] <= 7
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_request_options(client: httpx.Client) -> None:
    def ask(**options: Any) -> dict[str, Any]:
        response = client.post(
            "/chat/completions", json=completion_body("Hello! How can I help?", **options)
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    # max_completion_tokens wins over the older max_tokens.
    short = ask(max_tokens=20, max_completion_tokens=3, temperature=0)
    assert short["usage"]["completion_tokens"] <= 3
    free = ask(max_tokens=20, temperature=0)["choices"][0]["message"]["content"]
    assert len(free) > 6
    stopped = ask(max_tokens=20, temperature=0, stop=[free[3:6]])["choices"][0]
    assert stopped["finish_reason"] == "stop"
    assert stopped["message"]["content"] == free[: free.find(free[3:6])]
    # System and developer messages, content as text parts, sampling: all accepted.
    sampled = client.post(
        "/chat/completions",
        json={
            "model": MODEL,
            "messages": [
                {"role": "developer", "content": "You document code."},
                {"role": "user", "content": [{"type": "text", "text": "Summarize the file."}]},
            ],
            "max_tokens": 5,
            "temperature": 0.8,
            "top_p": 0.9,
            "n": 1,
            "stream": False,
            "user": "someone",
        },
    )
    assert sampled.status_code == 200, sampled.text


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        (completion_body("Hi", model="gpt-4o"), 404, "model_not_found", "model"),
        (completion_body("Hi", stream=True), 400, "unsupported_parameter", "stream"),
        (completion_body("Hi", n=2), 400, "unsupported_value", "n"),
        ({"model": MODEL, "messages": []}, 400, "invalid_request", "messages"),
        ({"model": MODEL}, 400, "invalid_request", "messages"),
        (completion_body("Hi", temperature=3), 400, "invalid_request", "temperature"),
        (completion_body("Hi", max_tokens=0), 400, "invalid_request", "max_tokens"),
        (
            {"model": MODEL, "messages": [{"role": "tool", "content": "x"}]},
            400,
            "invalid_request",
            "messages.0.role",
        ),
        (completion_body("Hi", stop=["a", "b", "c", "d", "e"]), 400, "invalid_value", "stop"),
        (completion_body("word " * 2000), 400, "context_length_exceeded", "messages"),
        (completion_body("Hi", max_tokens=100_000), 400, "context_length_exceeded", "messages"),
    ],
)
def test_errors_have_openais_shape(
    client: httpx.Client, body: dict[str, Any], status: int, code: str, param: str
) -> None:
    response = client.post("/chat/completions", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["code"], error["param"], error["type"]) == (
        code,
        param,
        "invalid_request_error",
    )
    assert error["message"]


def test_other_errors_have_openais_shape(client: httpx.Client) -> None:
    not_json = client.post(
        "/chat/completions", content=b"{", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 400
    assert not_json.json()["error"]["type"] == "invalid_request_error"
    assert not_json.json()["error"]["param"] is None
    unknown = client.get("/engines")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
    wrong_method = client.get("/chat/completions")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"


def test_concurrent_requests_are_batched(tiny_model_dir: Path, tiny_model: LocalModel) -> None:
    """With room for 4 and a long wait, 4 concurrent requests make exactly one batch."""
    from tests.fixtures.models import serve_openai_app

    prompts = ["Hi", "Write a docstring.", "def add(a, b): return a + b", "Rename it"]

    async def ask_all(base_url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base_url, timeout=120) as http:
            return await asyncio.gather(
                *(
                    http.post(
                        "/chat/completions",
                        json=completion_body(prompt, max_tokens=5 + index, temperature=0),
                    )
                    for index, prompt in enumerate(prompts)
                )
            )

    with serve_openai_app(tiny_model_dir, max_batch_size=4, batch_wait_s=60) as base_url:
        responses = asyncio.run(ask_all(base_url))
        stats = httpx.get(root_of(base_url) + "/stats").json()
    assert [response.status_code for response in responses] == [200] * 4
    assert [response.json()["choices"][0]["message"]["content"] for response in responses] == [
        expected_text(tiny_model, prompt, 5 + index) for index, prompt in enumerate(prompts)
    ]
    assert stats["batch_sizes"] == {"4": 1}
    assert (stats["batches"], stats["requests"], stats["largest_batch"]) == (1, 4, 4)


def test_health_is_503_until_the_model_is_loaded(tiny_model_dir: Path) -> None:
    import threading

    release = threading.Event()

    def slow_loader() -> LocalModel:
        release.wait(timeout=60)
        return LocalModel.load(tiny_model_dir)

    app = create_local_app(slow_loader, model_name=MODEL)
    with TestClient(app) as http:
        assert http.get("/health").status_code == 503
        waiting = http.post("/v1/chat/completions", json=completion_body("Hi", max_tokens=2))
        assert waiting.status_code == 503
        assert waiting.json()["error"]["code"] == "model_not_ready"
        release.set()
        for _ in range(600):
            if http.get("/health").status_code == 200:
                break
            time.sleep(0.05)
        answered = http.post("/v1/chat/completions", json=completion_body("Hi", max_tokens=2))
        assert answered.status_code == 200, answered.text


def test_smollm2_answers_in_english(smollm_url: str) -> None:
    with httpx.Client(base_url=smollm_url, timeout=300) as http:
        response = http.post(
            "/chat/completions",
            json=completion_body(
                "What is the capital of France? Answer in one short sentence.",
                max_tokens=30,
                temperature=0,
            ),
        )
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert "Paris" in choice["message"]["content"]
    assert choice["finish_reason"] == "stop"
    assert len(choice["message"]["content"].split()) >= 3


# --- Ray Serve: `hivesync inference` as a real process -----------------------------------------


def _process_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state, start time) of every process (Linux /proc)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), fields[0], fields[19])
    return table


def _descendants(root: int) -> dict[int, str]:
    """pid -> start time of every process below `root`."""
    table = _process_table()
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _, started) in table.items():
            if ppid == parent and pid not in found:
                found[pid] = started
                frontier.append(pid)
    return found


def _still_running(processes: dict[int, str]) -> list[int]:
    table = _process_table()
    return [
        pid
        for pid, started in processes.items()
        if pid in table and table[pid][2] == started and table[pid][1] != "Z"
    ]


@pytest.mark.e2e
def test_ray_serve_inference_server(tmp_path: Path, tiny_model_dir: Path) -> None:
    port = free_port()
    # Short: Ray puts Unix sockets under it (107-byte limit), which tmp_path would exceed.
    ray_dir = Path(tempfile.mkdtemp(prefix="hs-ray-", dir="/tmp"))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "SECRETS_DIR": str(tmp_path / "no-secrets"),
        "LOG_DIR": str(tmp_path / "logs"),
        "LOCAL_AI_MODEL_PATH": str(tiny_model_dir),
        "INFERENCE_PORT": str(port),
        "INFERENCE_RAY_DIR": str(ray_dir),
        "INFERENCE_CACHE_DIR": str(tmp_path / "models"),
        "INFERENCE_NUM_CPUS": "0.5",
        # 4 concurrent requests must make one batch, however slowly they arrive.
        "INFERENCE_MAX_BATCH_SIZE": "4",
        "INFERENCE_BATCH_WAIT_S": "60",
    }
    server = ManagedProcess(
        "hivesync inference",
        [str(Path(sys.executable).with_name("hivesync")), "inference"],
        env=env,
        cwd=tmp_path,
        log_file=tmp_path / "inference.out",
    ).start()
    assert server.process is not None
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_for_health(server, f"http://127.0.0.1:{port}/health", tmp_path / "inference.out")
        ray_processes = _descendants(server.process.pid)
        assert len(ray_processes) >= 3  # GCS, raylet, workers (Serve controller, proxy, replica)

        with httpx.Client(base_url=base_url, timeout=120) as http:
            assert [card["id"] for card in http.get("/models").json()["data"]] == [MODEL]
        prompts = ["Hi", "Write a docstring.", "def add(a, b): return a + b", "Rename it"]
        responses = asyncio.run(_ask_concurrently(base_url, prompts))
        model = LocalModel.load(tiny_model_dir)
        for prompt, response in zip(prompts, responses, strict=True):
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["object"] == "chat.completion"
            assert body["choices"][0]["message"]["content"] == expected_text(model, prompt, 6)
        stats = httpx.get(f"http://127.0.0.1:{port}/stats").json()
        assert stats["batch_sizes"] == {"4": 1}

        os.kill(server.process.pid, signal.SIGINT)
        assert server.process.wait(timeout=60) == 0
        assert _still_running(ray_processes) == []
        assert processes_mentioning(str(ray_dir)) == []
        log = (tmp_path / "logs" / "hivesync-inference.log").read_text()
        assert "inference server stopped" in log
    finally:
        server.stop(timeout_s=10)
        for pid in processes_mentioning(str(ray_dir)):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(ray_dir, ignore_errors=True)


def test_inference_command_refuses_a_missing_model(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("hivesync")), "inference"],
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "SECRETS_DIR": str(tmp_path / "no-secrets"),
            "LOCAL_AI_MODEL_PATH": str(tmp_path / "missing"),
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert f"model path {tmp_path / 'missing'} does not exist" in result.stderr


async def _ask_concurrently(base_url: str, prompts: list[str]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as http:
        return await asyncio.gather(
            *(
                http.post(
                    "/chat/completions", json=completion_body(prompt, max_tokens=6, temperature=0)
                )
                for prompt in prompts
            )
        )


def _wait_for_health(server: ManagedProcess, url: str, output: Path) -> None:
    for _ in range(1200):  # at most ~2 minutes
        if not server.running():
            raise AssertionError(f"hivesync inference exited:\n{output.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered 200:\n{output.read_text()[-3000:]}")
