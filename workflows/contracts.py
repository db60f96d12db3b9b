"""Data passed between the API, workflows and activities (pure pydantic, no I/O).

Kept small: source bytes never travel in Temporal payloads, only storage keys and hashes."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

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


class BuildError(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class PreviewOutcome(BaseModel):
    """Recorded in PreviewLog and announced to the user when a build ends."""

    build_id: str
    project_id: uuid.UUID
    user_id: uuid.UUID
    phase: BuildPhase
    duration_ms: int
    artifacts: PreviewArtifacts | None = None
    error: BuildError | None = None
