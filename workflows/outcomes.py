"""What every job's workflow does at its end: record the outcome, then announce it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, is_cancelled_exception

BOOKKEEPING_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
)
# Announcing an outcome is idempotent (one notification per run, see activities/outcomes.py) and
# a failed publish is not an error; what is retried is a database that refuses, for ~10 min.
NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=25,
)
BOOKKEEPING_TIMEOUT = timedelta(seconds=30)


async def record_outcome(activity: str, outcome: Any) -> None:
    await workflow.execute_activity(
        activity,
        outcome,
        start_to_close_timeout=BOOKKEEPING_TIMEOUT,
        retry_policy=BOOKKEEPING_RETRY,
    )


async def announce_outcome(activity: str, outcome: Any, job: str) -> None:
    """Tell the user; when every attempt fails (the database stayed down), the job's recorded
    result stands and its owner sees it in the job's status."""
    try:
        await workflow.execute_activity(
            activity,
            outcome,
            start_to_close_timeout=BOOKKEEPING_TIMEOUT,
            retry_policy=NOTIFY_RETRY,
        )
    except ActivityError as failure:
        if is_cancelled_exception(failure):
            raise
        workflow.logger.warning("%s: its outcome was not announced", job)
