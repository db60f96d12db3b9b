from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from services.common import InputModel, max_json_bytes

MAX_CONFIG_BYTES = 64 * 1024
ProjectName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
ProjectConfig = Annotated[dict[str, Any], AfterValidator(max_json_bytes(MAX_CONFIG_BYTES))]


class ProjectCreate(InputModel):
    name: ProjectName
    config: ProjectConfig = Field(default_factory=dict)


class ProjectUpdate(InputModel):
    name: ProjectName | None = None
    config: ProjectConfig | None = Field(default=None, description="Replaces the whole config")


class ProjectRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    created_at: datetime
    updated_at: datetime
    config: dict[str, Any]
