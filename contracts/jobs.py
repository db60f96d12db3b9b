"""What every kind of job shares: the task queues, the phases' rules and the error a failed
job reports."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, Field


class TaskQueue(StrEnum):
    """Temporal's task queues (each prefixed by `TEMPORAL_TASK_QUEUE_PREFIX`)."""

    CPU = "cpu_tasks"  # bundling, uploads, records, planning: the workflows themselves too
    GPU = "gpu_tasks"  # calls to the local model, whose backlog drives the GPU autoscaler


class JobPhase(StrEnum):
    """Base of each kind of job's phases, as the API reports them. Every job starts `queued`
    and ends in one of three: its own success (`succeeded()`), `failed` or `cancelled`; the
    phases in between are the kind's own."""

    @classmethod
    def queued(cls) -> Self:
        return cls("queued")

    @classmethod
    def succeeded(cls) -> Self:
        """The phase of a job that did its work."""
        raise NotImplementedError

    @classmethod
    def running(cls) -> Self:
        """The phase of a job whose activity has started and says nothing more specific."""
        raise NotImplementedError

    @classmethod
    def failed(cls) -> Self:
        return cls("failed")

    @classmethod
    def cancelled(cls) -> Self:
        return cls("cancelled")

    @property
    def ended(self) -> bool:
        return self in (self.succeeded(), self.failed(), self.cancelled())


class JobError(BaseModel):
    """Why a job failed, as clients read it: the documented `{code, message, details}`."""

    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)
