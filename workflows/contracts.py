"""Data passed between the API, workflows and activities (pure pydantic, no I/O).

Kept small: source bytes never travel in Temporal payloads, only storage keys and hashes."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.exceptions import TimeoutError as TemporalTimeoutError

CPU_TASK_QUEUE = "cpu_tasks"
GPU_TASK_QUEUE = "gpu_tasks"

Platform = Literal["ios", "android"]
Environment = Literal["development", "production"]


class BuildPhase(StrEnum):
    """What a preview build is doing, as the API reports it."""

    QUEUED = "queued"
    BUNDLING = "bundling"
    UPLOADING = "uploading"
    READY = "ready"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_PHASES = frozenset({BuildPhase.READY, BuildPhase.FAILED, BuildPhase.CANCELLED})


class PreviewBuildInput(BaseModel):
    build_id: str
    project_id: uuid.UUID
    user_id: uuid.UUID
    source_hash: str
    entry_file: str
    platform: Platform
    environment: Environment
    toolchain: str
    timeout_ms: int
    requested_at: datetime


class AssetInfo(BaseModel):
    path: str
    size: int
    sha256: str


class PreviewArtifacts(BaseModel):
    """What `build_preview` stored under `previews/<build_id>/`."""

    build_id: str
    bundle_size: int
    bundle_sha256: str
    compressed_sizes: dict[str, int] = Field(description="gzip and brotli sizes in bytes")
    assets: list[AssetInfo]
    bundle_ms: int
    storage_prefix: str


class JobError(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)

    def as_failure(
        self,
        *,
        type: str | None = None,
        non_retryable: bool = False,
        next_retry_delay: timedelta | None = None,
    ) -> ApplicationError:
        """This error as an activity or workflow raises it; `from_failure` reads it back."""
        return ApplicationError(
            self.message,
            self.model_dump(),
            type=type or self.code,
            non_retryable=non_retryable,
            next_retry_delay=next_retry_delay,
        )

    @classmethod
    def from_failure(cls, cause: BaseException | None, default_code: str) -> JobError:
        """The error a failed activity or workflow reported (its `{code, message, details}`
        detail, or its type and message), or `default_code` with what is known otherwise."""
        if isinstance(cause, ApplicationError):
            detail = cause.details[0] if cause.details else None
            if isinstance(detail, dict) and "code" in detail:
                return cls.model_validate(detail)
            return cls(code=cause.type or default_code, message=cause.message)
        if isinstance(cause, TemporalTimeoutError):
            return cls(code=default_code, message="No worker finished in time")
        if isinstance(cause, CancelledError):
            return cls(code=default_code, message="Cancelled")
        return cls(code=default_code, message=str(cause or "unknown failure"))


class PreviewOutcome(BaseModel):
    """Recorded in PreviewLog and announced to the user when a build ends."""

    build_id: str
    project_id: uuid.UUID
    user_id: uuid.UUID
    phase: BuildPhase
    duration_ms: int
    artifacts: PreviewArtifacts | None = None
    error: JobError | None = None


# --- documentation passes ----------------------------------------------------------------------

Language = Literal["python", "javascript", "typescript"]


class DocJobType(StrEnum):
    INLINE_COMMENT = "inline_comment"
    FILE_SUMMARY = "file_summary"
    FUNCTION_DOC = "function_doc"
    VARIABLE_RENAME = "variable_rename"
    FULL_FILE_PASS = "full_file_pass"  # noqa: S105 - a job type, not a password


class DocPhase(StrEnum):
    """What a documentation job is doing, as the API reports it."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class TaskKind(StrEnum):
    """What one model call writes."""

    SUMMARY = "summary"  # a file summary (module docstring / @file comment)
    DOCSTRING = "docstring"  # a function's or class's docstring / JSDoc
    COMMENT = "comment"  # a comment above one line
    RENAME = "rename"  # a better name for one variable


class GenerationTask(BaseModel):
    """One model call of a job: the prompt, and what is needed to read the answer."""

    task_id: str
    kind: TaskKind
    messages: list[ChatMessage]
    max_tokens: int
    # Facts about the target that reading the answer needs (names, parameters, old name...).
    context: dict[str, Any] = Field(default_factory=dict)


class GeneratedText(BaseModel):
    """A model's usable answer to one task, and who gave it."""

    task_id: str
    text: str  # cleaned and checked by the task kind's reader
    raw_text: str
    provider: str
    model: str
    tokens_in: int
    tokens_out: int
    latency_ms: int


class DocJobInput(BaseModel):
    """What DocPassWorkflow needs; the content stays in the database (jobs take up to 1 MB)."""

    job_id: uuid.UUID
    project_id: uuid.UUID
    user_id: uuid.UUID
    job_type: DocJobType
    file_path: str
    # Where model calls run: gpu_tasks when the local model serves, else cpu_tasks (prefixed).
    inference_queue: str
    max_concurrency: int
    requested_at: datetime


class GenerateInput(BaseModel):
    task: GenerationTask
    strict: bool = False  # the second try, with a stricter prompt


class AssembleInput(BaseModel):
    job_id: uuid.UUID
    tasks: list[GenerationTask]
    generated: list[GeneratedText]
    duration_ms: int


class DocJobSummary(BaseModel):
    job_id: uuid.UUID
    summary: str
    edits: int
    suggestions: int


class DocJobOutcome(BaseModel):
    """Recorded on the job and announced to the user when a job fails or is cancelled."""

    job_id: uuid.UUID
    project_id: uuid.UUID
    user_id: uuid.UUID
    phase: DocPhase
    file_path: str
    duration_ms: int
    summary: str | None = None
    error: JobError | None = None
