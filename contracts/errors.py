"""Error codes: what clients read in `{"error": {"code": ...}}` and in a failed job's `error`,
and the failure types that only Temporal's retry policies see."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    VALIDATION_ERROR = "VALIDATION_ERROR"
    AUTH_ERROR = "AUTH_ERROR"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    CONFLICT = "CONFLICT"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    RATE_LIMIT = "RATE_LIMIT"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    HTTP_ERROR = "HTTP_ERROR"
    PREVIEW_ERROR = "PREVIEW_ERROR"
    PREVIEW_TIMEOUT = "PREVIEW_TIMEOUT"
    PREVIEW_BUILD_FAILED = "PREVIEW_BUILD_FAILED"
    PREVIEW_INVALID_SOURCE = "PREVIEW_INVALID_SOURCE"
    STORAGE_ERROR = "STORAGE_ERROR"
    AI_ERROR = "AI_ERROR"


class FailureType(StrEnum):
    """Types of activity failures that workflows tell apart. Clients never see them: the
    failure's `JobError` carries the client's code (AI_ERROR for all three)."""

    # No provider's answer was usable: worth one more try with a stricter prompt, no more.
    UNUSABLE_OUTPUT = "AI_UNUSABLE_OUTPUT"
    # The answers could not be made into edits that apply and parse: final.
    INVALID_RESULT = "INVALID_RESULT"
    # The job's record is gone (its project was deleted): final.
    JOB_NOT_FOUND = "JOB_NOT_FOUND"
