"""Preview builds: the workflow's and activities' names and the data they exchange. Source
bytes never travel in Temporal payloads, only storage keys and hashes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal, Self

from pydantic import BaseModel, Field

from contracts.errors import ErrorCode
from contracts.jobs import JobError, JobPhase

PREVIEW_WORKFLOW = "PreviewBuildWorkflow"
BUILD_PREVIEW = "build_preview"
RECORD_PREVIEW_OUTCOME = "record_preview_outcome"
NOTIFY_PREVIEW_OUTCOME = "notify_preview_outcome"

# The sources' or the bundle's fault: retrying cannot help. Storage errors are retried.
FINAL_PREVIEW_ERRORS = (
    ErrorCode.PREVIEW_TIMEOUT,
    ErrorCode.PREVIEW_BUILD_FAILED,
    ErrorCode.PREVIEW_INVALID_SOURCE,
)

Platform = Literal["ios", "android"]
Environment = Literal["development", "production"]


def preview_workflow_id(build_id: str) -> str:
    """Identical build requests share a build id, hence one workflow run."""
    return f"preview-{build_id}"


class BuildPhase(JobPhase):
    """What a preview build is doing, as the API reports it."""

    QUEUED = "queued"
    BUNDLING = "bundling"
    UPLOADING = "uploading"
    READY = "ready"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @classmethod
    def succeeded(cls) -> Self:
        return cls("ready")

    @classmethod
    def running(cls) -> Self:
        return cls("bundling")


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


class PreviewOutcome(BaseModel):
    """Recorded in PreviewLog and announced to the user when a build ends."""

    build_id: str
    project_id: uuid.UUID
    user_id: uuid.UUID
    phase: BuildPhase
    duration_ms: int
    artifacts: PreviewArtifacts | None = None
    error: JobError | None = None
