"""PreviewBuildWorkflow: sources in storage -> Metro bundle -> artifacts in storage -> recorded.

One build activity does fetch, bundle, compress and upload on the same worker (the bundle never
leaves that worker's disk); it heartbeats its phase, which the API reads back. Build errors,
invalid sources and timeouts are final; storage errors are retried with backoff. Whatever the
end (ready, failed, cancelled) is recorded in PreviewLog and announced to the user.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, is_cancelled_exception

from workflows.outcomes import announce_outcome, record_outcome

with workflow.unsafe.imports_passed_through():
    from contracts.errors import ErrorCode
    from contracts.failures import job_error, job_failure
    from contracts.jobs import JobError
    from contracts.previews import (
        BUILD_PREVIEW,
        FINAL_PREVIEW_ERRORS,
        NOTIFY_PREVIEW_OUTCOME,
        PREVIEW_WORKFLOW,
        RECORD_PREVIEW_OUTCOME,
        BuildPhase,
        PreviewArtifacts,
        PreviewBuildInput,
        PreviewOutcome,
    )

# Fetching sources, compressing and uploading, on top of Metro's own hard timeout.
TRANSFER_ALLOWANCE = timedelta(minutes=3)
BUILD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=5,
    non_retryable_error_types=list(FINAL_PREVIEW_ERRORS),
)


@workflow.defn(name=PREVIEW_WORKFLOW)
class PreviewBuildWorkflow:
    @workflow.run
    async def run(self, request: PreviewBuildInput) -> PreviewArtifacts:
        try:
            artifacts: PreviewArtifacts = await workflow.execute_activity(
                BUILD_PREVIEW,
                request,
                result_type=PreviewArtifacts,
                start_to_close_timeout=timedelta(milliseconds=request.timeout_ms)
                + TRANSFER_ALLOWANCE,
                # A worker that dies mid-build stops heartbeating: the build moves to another.
                heartbeat_timeout=timedelta(seconds=15),
                retry_policy=BUILD_RETRY,
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
        except ActivityError as failure:
            if is_cancelled_exception(failure):  # the build was cancelled while it ran
                await self._finish(request, BuildPhase.CANCELLED)
                raise
            error = job_error(failure.cause, ErrorCode.PREVIEW_ERROR)
            await self._finish(request, BuildPhase.FAILED, error=error)
            raise job_failure(error, non_retryable=True) from failure
        except asyncio.CancelledError:
            await self._finish(request, BuildPhase.CANCELLED)
            raise
        await self._finish(request, BuildPhase.READY, artifacts=artifacts)
        return artifacts

    async def _finish(
        self,
        request: PreviewBuildInput,
        phase: BuildPhase,
        *,
        artifacts: PreviewArtifacts | None = None,
        error: JobError | None = None,
    ) -> None:
        elapsed = workflow.now() - request.requested_at
        outcome = PreviewOutcome(
            build_id=request.build_id,
            project_id=request.project_id,
            user_id=request.user_id,
            phase=phase,
            duration_ms=int(elapsed.total_seconds() * 1000),
            artifacts=artifacts,
            error=error,
        )
        await record_outcome(RECORD_PREVIEW_OUTCOME, outcome)
        await announce_outcome(NOTIFY_PREVIEW_OUTCOME, outcome, f"build {request.build_id}")
