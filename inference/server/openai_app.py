"""The local model's HTTP API: the subset of OpenAI's that the AI engine speaks.

- `POST /v1/chat/completions`: model, messages, max_tokens / max_completion_tokens,
  temperature, top_p, stop; `n` must be 1 and `stream` false. Other OpenAI fields are ignored.
- `GET /v1/models`, `GET /v1/models/{id}`: the one model served.
- `GET /health`: 200 once the model is loaded, 503 before.
- `GET /stats`: how requests were batched (per process; per replica under Ray Serve).

Errors have OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`.

`create_openai_app` takes the "answer one request" coroutine, so the same app runs in process
(`create_local_app`: the model plus an asyncio micro-batcher) and in Ray Serve
(inference/server/serve.py, batching with `@serve.batch`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Lifespan

from inference.server.local_model import ChatRequest, Completion, InvalidRequestError

if TYPE_CHECKING:
    from core.config import Settings
    from inference.server.local_model import LocalModel

log = logging.getLogger("hivesync.inference.app")

GenerateOne = Callable[[ChatRequest], Awaitable[Completion]]

OWNER = "hivesync"
MAX_STOP_SEQUENCES = 4


# --- request and response shapes ---------------------------------------------------------------


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None

    def as_chat(self) -> dict[str, str]:
        # "developer" is the newer name of "system"; chat templates only know the latter.
        role = "system" if self.role == "developer" else self.role
        if isinstance(self.content, list):
            return {"role": role, "content": "".join(part.text for part in self.content)}
        return {"role": role, "content": self.content or ""}


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    # OpenAI's default is 1 (sampling); 0 is greedy.
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    n: int | None = None
    stream: bool | None = None

    def to_chat_request(self) -> ChatRequest:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return ChatRequest(
            messages=[message.as_chat() for message in self.messages],
            max_tokens=self.max_completion_tokens or self.max_tokens,
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            stop=stop,
        )


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = OWNER


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# --- errors ------------------------------------------------------------------------------------


class OpenAIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.error_type = error_type
        self.code = code
        self.param = param

    def response(self) -> JSONResponse:
        return error_response(
            self.status_code, self.message, self.error_type, self.code, self.param
        )


def error_response(
    status_code: int, message: str, type_: str, code: str | None, param: str | None = None
) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status_code)


def _field_path(problem: Mapping[str, Any]) -> str:
    """`messages.0.role` for a pydantic error located at ("body", "messages", 0, "role")."""
    if problem.get("type") == "json_invalid":
        return ""
    return ".".join(str(part) for part in problem.get("loc", ()) if part != "body")


def _install_error_handlers(app: FastAPI) -> None:
    async def openai_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, OpenAIError)
        return error.response()

    async def invalid_request(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        problems = [(_field_path(problem), str(problem.get("msg"))) for problem in error.errors()]
        message = "; ".join(f"{path}: {text}" if path else text for path, text in problems)
        param = problems[0][0] if problems else ""
        return error_response(
            400,
            message or "Invalid request",
            "invalid_request_error",
            "invalid_request",
            param or None,
        )

    async def http_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return error_response(error.status_code, str(error.detail), "invalid_request_error", code)

    async def unexpected(_: Request, error: Exception) -> JSONResponse:
        log.exception("chat completion failed", exc_info=error)
        return error_response(500, "The model failed to answer", "server_error", "internal_error")

    app.add_exception_handler(OpenAIError, openai_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


# --- the app -----------------------------------------------------------------------------------


def create_openai_app(
    generate: GenerateOne,
    *,
    model_name: str,
    is_ready: Callable[[], bool] = lambda: True,
    stats: Callable[[], Mapping[str, Any]] | None = None,
    lifespan: Lifespan[FastAPI] | None = None,
) -> FastAPI:
    """The OpenAI-compatible API over `generate` (one request in, its completion out).

    `generate` may raise InvalidRequestError (answered 400 with its code); `is_ready` gates
    /health and the completions (503 until the model is loaded)."""
    created = int(time.time())
    app = FastAPI(
        title="HiveSync local model",
        summary="OpenAI-compatible chat completions of the local model",
        lifespan=lifespan,
    )
    _install_error_handlers(app)

    def check_model(name: str) -> None:
        if name != model_name:
            raise OpenAIError(
                404, f"The model `{name}` does not exist", code="model_not_found", param="model"
            )

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest) -> ChatCompletion:
        check_model(body.model)
        if body.stream:
            raise OpenAIError(
                400, "Streaming is not supported", code="unsupported_parameter", param="stream"
            )
        if body.n not in (None, 1):
            raise OpenAIError(400, "Only n=1 is supported", code="unsupported_value", param="n")
        if isinstance(body.stop, list) and len(body.stop) > MAX_STOP_SEQUENCES:
            message = f"At most {MAX_STOP_SEQUENCES} stop sequences"
            raise OpenAIError(400, message, code="invalid_value", param="stop")
        if not is_ready():
            raise OpenAIError(
                503, "The model is still loading", error_type="server_error", code="model_not_ready"
            )
        try:
            completion = await generate(body.to_chat_request())
        except InvalidRequestError as error:
            raise OpenAIError(400, str(error), code=error.code, param="messages") from error
        return ChatCompletion(
            id=f"chatcmpl-{uuid.uuid4().hex}",
            created=int(time.time()),
            model=model_name,
            choices=[
                Choice(
                    message=AssistantMessage(content=completion.text),
                    finish_reason=completion.finish_reason,
                )
            ],
            usage=Usage(
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                total_tokens=completion.prompt_tokens + completion.completion_tokens,
            ),
        )

    @app.get("/v1/models")
    async def list_models() -> ModelList:
        return ModelList(data=[ModelCard(id=model_name, created=created)])

    @app.get("/v1/models/{name}")
    async def get_model(name: str) -> ModelCard:
        check_model(name)
        return ModelCard(id=model_name, created=created)

    @app.get("/health", response_model=None)
    async def health() -> dict[str, str] | JSONResponse:
        if not is_ready():
            return JSONResponse({"status": "loading", "model": model_name}, status_code=503)
        return {"status": "ok", "model": model_name}

    @app.get("/stats")
    async def batch_stats() -> dict[str, Any]:
        return {"model": model_name, **(stats() if stats is not None else {})}

    return app


# --- in process --------------------------------------------------------------------------------


def create_local_app(
    model: LocalModel | Callable[[], LocalModel],
    *,
    model_name: str,
    max_batch_size: int = 8,
    batch_wait_s: float = 0.05,
) -> FastAPI:
    """The app over a model in this process, requests batched by a MicroBatcher.

    Given a loader instead of a model, the app loads it in a thread once it starts: /health
    answers 503 until then (and for good if loading failed; the error is logged)."""
    from inference.server.batching import MicroBatcher
    from inference.server.local_model import LocalModel, PreparedChat

    state: dict[str, LocalModel] = {}
    if isinstance(model, LocalModel):
        state["model"] = model

    def run_batch(batch: Sequence[PreparedChat]) -> list[Completion]:
        return state["model"].generate(batch)

    batcher: MicroBatcher[PreparedChat, Completion] = MicroBatcher(
        run_batch, max_batch_size=max_batch_size, batch_wait_s=batch_wait_s
    )

    async def generate(request: ChatRequest) -> Completion:
        prepared = await asyncio.to_thread(state["model"].prepare, request)
        return await batcher.submit(prepared)

    async def load(loader: Callable[[], LocalModel]) -> None:
        try:
            state["model"] = await asyncio.to_thread(loader)
        except Exception:
            log.exception("loading the model failed")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loading = None if isinstance(model, LocalModel) else asyncio.create_task(load(model))
        yield
        if loading is not None:
            loading.cancel()
        await batcher.close()

    return create_openai_app(
        generate,
        model_name=model_name,
        is_ready=lambda: "model" in state,
        stats=batcher.stats.as_dict,
        lifespan=lifespan,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """For `uvicorn --factory inference.server.openai_app:create_app`: the model of the settings
    (LOCAL_AI_MODEL_PATH, or the embedded SmolLM2), batched in process, no Ray."""
    from core.config import get_settings
    from inference.server.local_model import LocalModel

    settings = settings or get_settings()
    return create_local_app(
        lambda: LocalModel.from_settings(settings),
        model_name=settings.local_ai_model,
        max_batch_size=settings.inference_max_batch_size,
        batch_wait_s=settings.inference_batch_wait_s,
    )
