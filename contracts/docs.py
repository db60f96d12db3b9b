"""Documentation passes: the workflow's and activities' names and the data they exchange. A
job's content stays in the database (jobs take up to 1 MB), never in Temporal payloads."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Self

from pydantic import BaseModel, Field, model_validator

from contracts.jobs import JobError, JobPhase

DOC_WORKFLOW = "DocPassWorkflow"
PLAN_DOC_JOB = "plan_doc_job"
GENERATE_DOC_TEXT = "generate_doc_text"
ASSEMBLE_DOC_JOB = "assemble_doc_job"
RECORD_DOC_OUTCOME = "record_doc_outcome"
NOTIFY_DOC_OUTCOME = "notify_doc_outcome"

Language = Literal["python", "javascript", "typescript"]


def doc_workflow_id(job_id: uuid.UUID) -> str:
    return f"docs-{job_id}"


class DocJobType(StrEnum):
    INLINE_COMMENT = "inline_comment"
    FILE_SUMMARY = "file_summary"
    FUNCTION_DOC = "function_doc"
    VARIABLE_RENAME = "variable_rename"
    FULL_FILE_PASS = "full_file_pass"  # noqa: S105 - a job type, not a password


class DocPhase(JobPhase):
    """What a documentation job is doing, as the API reports it."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @classmethod
    def succeeded(cls) -> Self:
        return cls("completed")

    @classmethod
    def running(cls) -> Self:
        return cls("running")


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


class DocPlan(BaseModel):
    """What `plan_doc_job` returns: the tasks, and how many candidates the job's bounds left
    out (tasks over the per-job count, the plan's size, or a task's own size)."""

    tasks: list[GenerationTask]
    not_planned: int = 0

    @model_validator(mode="before")
    @classmethod
    def _from_task_list(cls, data: Any) -> Any:
        """A bare list of tasks, as plans were before they counted what they left out (the
        histories of workflows started then still hold one)."""
        return {"tasks": data} if isinstance(data, list) else data


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
    """What DocPassWorkflow needs; the content stays in the database."""

    job_id: uuid.UUID
    project_id: uuid.UUID
    user_id: uuid.UUID
    job_type: DocJobType
    file_path: str
    # Where model calls run: gpu_tasks when the local model serves, else cpu_tasks (prefixed).
    inference_queue: str
    max_concurrency: int
    requested_at: datetime
    # How long a model call may wait in gpu_tasks for a ready model server
    # (INFERENCE_WAIT_TIMEOUT_S); None = no limit (cpu_tasks, and jobs started before it).
    inference_wait_timeout_s: float | None = None


class GenerateInput(BaseModel):
    task: GenerationTask
    strict: bool = False  # the second try, with a stricter prompt


class AssembleInput(BaseModel):
    job_id: uuid.UUID
    tasks: list[GenerationTask]  # their messages may be left out: assembly reads the rest
    generated: list[GeneratedText]
    duration_ms: int
    not_planned: int = 0  # see DocPlan


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
