"""Shapes of documentation jobs: what clients send, and the edits they get back.

Positions are 0-based: `line` counts lines, `column` counts characters (Unicode code points)
from the start of the line. An insertion has `start == end`."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from contracts.docs import DocJobType, DocPhase, Language
from contracts.jobs import JobError
from services.common import InputModel

MAX_CONTENT_BYTES = 1024 * 1024


class Position(BaseModel):
    line: int = Field(ge=0)
    column: int = Field(ge=0)


class Range(BaseModel):
    start: Position
    end: Position


class Edit(BaseModel):
    """Replace the text between `start` and `end` with `new_text`."""

    start: Position
    end: Position
    new_text: str


class RenameSuggestion(BaseModel):
    """A clearer name for a variable; `occurrences` are every place that names the same
    binding (scope-aware), for the plugin to rename if the user agrees."""

    old: str
    new: str
    reason: str
    occurrences: list[Range]


class DocEdits(BaseModel):
    """The checked outcome of a job: edits that apply to the content sent, the content with
    them applied, a unified diff, and rename suggestions (never applied)."""

    edits: list[Edit]
    patched_content: str
    diff: str
    summary: str
    suggestions: list[RenameSuggestion] = Field(default_factory=list)


class DocResult(DocEdits):
    provider: str
    model: str
    tokens_in: int
    tokens_out: int
    duration_ms: int


class DocJobCreate(InputModel):
    project_id: uuid.UUID
    job_type: DocJobType
    file_path: str = Field(min_length=1, max_length=1024, examples=["src/app/models.py"])
    content: str = Field(description=f"The file's text, at most {MAX_CONTENT_BYTES} bytes")
    language: Language | None = Field(
        default=None, description="python, javascript or typescript; from the file name if absent"
    )


class DocJobAccepted(BaseModel):
    job_id: uuid.UUID
    status: DocPhase
    status_url: str


class DocJobRead(BaseModel):
    job_id: uuid.UUID
    project_id: uuid.UUID
    job_type: DocJobType
    file_path: str
    language: Language
    status: DocPhase
    created_at: datetime
    completed_at: datetime | None = None
    error: JobError | None = None
    result: DocResult | None = None
