"""Errors that services raise and the API renders as
`{"error": {"code": ..., "message": ..., "details": {...}}}`."""

from __future__ import annotations

from typing import Any, ClassVar

from contracts.errors import ErrorCode


class AppError(Exception):
    """Base of every error with a documented code. `message` is safe to show to clients."""

    status_code: ClassVar[int] = 500
    default_code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_ERROR

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = details or {}
        self.headers = headers or {}


class ValidationFailed(AppError):
    status_code = 422
    default_code = ErrorCode.VALIDATION_ERROR

    @classmethod
    def for_field(cls, field: str, message: str) -> ValidationFailed:
        return cls(message, details={"fields": [{"field": field, "message": message}]})


class AuthError(AppError):
    status_code = 401
    default_code = ErrorCode.AUTH_ERROR

    def __init__(self, message: str = "Not authenticated", **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kwargs)


class PermissionDenied(AppError):
    """Authenticated, but this credential may not do that (e.g. wrong current password)."""

    status_code = 403
    default_code = ErrorCode.AUTH_ERROR


class NotFound(AppError):
    status_code = 404
    default_code = ErrorCode.NOT_FOUND


class Conflict(AppError):
    status_code = 409
    default_code = ErrorCode.CONFLICT


class PayloadTooLarge(AppError):
    status_code = 413
    default_code = ErrorCode.PAYLOAD_TOO_LARGE


class RateLimited(AppError):
    status_code = 429
    default_code = ErrorCode.RATE_LIMIT

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(
            message,
            details={"retry_after": retry_after_s},
            headers={"Retry-After": str(retry_after_s)},
        )
        self.retry_after_s = retry_after_s


class ServiceUnavailable(AppError):
    status_code = 503
    default_code = ErrorCode.SERVICE_UNAVAILABLE


class StorageError(AppError):
    """Object storage refused or could not be reached (after retries where they apply)."""

    status_code = 503
    default_code = ErrorCode.STORAGE_ERROR


class PreviewError(AppError):
    """A preview build failed; `code` says how (PREVIEW_TIMEOUT, PREVIEW_BUILD_FAILED, ...)."""

    status_code = 422
    default_code = ErrorCode.PREVIEW_ERROR


class AIError(AppError):
    """No AI provider gave a usable answer; `details.providers` says why for each."""

    status_code = 502
    default_code = ErrorCode.AI_ERROR


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}
