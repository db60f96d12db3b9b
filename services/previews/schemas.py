from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, model_validator

from contracts.jobs import JobError
from contracts.previews import BuildPhase, Environment, Platform
from services.common import InputModel


class Base64File(InputModel):
    base64: str = Field(description="A binary file (an image asset), base64-encoded")


class BuildRequest(InputModel):
    project_id: uuid.UUID
    target_platform: Platform
    entry_file: str = Field(min_length=1, max_length=1024, examples=["index.js"])
    environment: Environment = "development"
    files: dict[str, str | Base64File] | None = Field(
        default=None, description="path -> text, or {base64} for binary files"
    )
    source_id: uuid.UUID | None = Field(
        default=None, description="An archive uploaded with POST /projects/{id}/sources"
    )

    @model_validator(mode="after")
    def _one_kind_of_sources(self) -> BuildRequest:
        if (self.files is None) == (self.source_id is None):
            raise ValueError("send either `files` or `source_id`")
        return self


class BuildAccepted(BaseModel):
    build_id: str
    status: BuildPhase
    status_url: str


class BuildReady(BaseModel):
    """The answer once a build is ready: a signed bundle URL and the preview app's token."""

    url: str
    token: str
    expires_in: int
    build_id: str


class BuildRead(BaseModel):
    build_id: str
    project_id: uuid.UUID
    status: BuildPhase
    platform: str
    entry_file: str
    environment: str
    requested_at: datetime
    completed_at: datetime | None = None
    duration_ms: int | None = None
    bundle_size: int | None = None
    error: JobError | None = None
    url: str | None = Field(default=None, description="When ready: signed bundle URL")
    token: str | None = Field(default=None, description="When ready: preview token")
    expires_in: int | None = None


class SourceUploaded(BaseModel):
    source_id: uuid.UUID
    source_hash: str
    file_count: int
    total_bytes: int


class ShareRequest(InputModel):
    username: str = Field(min_length=1, max_length=32)


class ShareRead(BaseModel):
    build_id: str
    username: str
    shared_at: datetime


class ManifestAsset(BaseModel):
    path: str
    url: str
    size: int
    sha256: str


class ManifestRead(BaseModel):
    """What the mobile preview app needs to load a build; URLs expire after `expires_in`."""

    build_id: str
    project_id: uuid.UUID
    platform: str
    entry_file: str
    environment: str
    created_at: datetime
    bundle_url: str
    bundle_brotli_url: str
    bundle: dict[str, Any]
    assets: list[ManifestAsset]
    toolchain: dict[str, str]
    expires_in: int
