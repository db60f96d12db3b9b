"""A `JobError` as a Temporal failure and back: activities raise it, workflows and the API read
it. The one contracts module that imports Temporal (its exceptions only)."""

from __future__ import annotations

from datetime import timedelta

from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.exceptions import TimeoutError as TemporalTimeoutError

from contracts.jobs import JobError


def job_failure(
    error: JobError,
    *,
    type: str | None = None,
    non_retryable: bool = False,
    next_retry_delay: timedelta | None = None,
) -> ApplicationError:
    """`error` as an activity or workflow raises it; its type is the error's code unless
    `type` says otherwise. `job_error` reads it back."""
    return ApplicationError(
        error.message,
        error.model_dump(),
        type=str(type or error.code),
        non_retryable=non_retryable,
        next_retry_delay=next_retry_delay,
    )


def job_error(cause: BaseException | None, default_code: str) -> JobError:
    """The error a failed activity or workflow reported (its `{code, message, details}` detail,
    or its type and message), or `default_code` with what is known otherwise."""
    if isinstance(cause, ApplicationError):
        detail = cause.details[0] if cause.details else None
        if isinstance(detail, dict) and "code" in detail:
            return JobError.model_validate(detail)
        return JobError(code=cause.type or default_code, message=cause.message)
    if isinstance(cause, TemporalTimeoutError):
        return JobError(code=default_code, message="No worker finished in time")
    if isinstance(cause, CancelledError):
        return JobError(code=default_code, message="Cancelled")
    return JobError(code=default_code, message=str(cause or "unknown failure"))
