from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict


class NotificationType(StrEnum):
    PREVIEW_READY = "preview.ready"
    PREVIEW_FAILED = "preview.failed"
    PREVIEW_SHARED = "preview.shared"
    DOCS_COMPLETED = "docs.completed"
    DOCS_FAILED = "docs.failed"
    ERROR_ALERT = "error.alert"


class NotificationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    type: str
    payload: dict[str, Any]
    created_at: datetime


class NotificationPage(BaseModel):
    items: list[NotificationRead]
    next_after: int = 0
    """Pass as `after` to get what came next (the last id seen, or `after` if none)."""
