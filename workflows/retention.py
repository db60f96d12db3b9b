"""Cleanup workflows, on cpu_tasks.

ProjectCleanupWorkflow: what a deleted project leaves outside the database. It waits until the
project's row is gone (the API starts it just before the deletion commits; a deletion that did
not commit leaves everything alone), cancels the project's running builds and documentation
jobs and waits until they have stopped (so that no build uploads after its folder is deleted),
then deletes its builds' objects and those of its sources that no other project uses. Storage
errors are retried until storage answers.

RetentionWorkflow: started by the `preview-retention` schedule. Expires builds and sources
past their retention in batches, then removes objects that no row names.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from contracts.cleanup import (
        CONFIRM_PROJECT_DELETED,
        DELETE_PROJECT_OBJECTS,
        EXPIRE_BUILDS,
        EXPIRE_SOURCES,
        PROJECT_CLEANUP_WORKFLOW,
        RETENTION_WORKFLOW,
        STOP_PROJECT_JOBS,
        SWEEP_ORPHANS,
        CleanupSummary,
        ExpiredBatch,
        ProjectContents,
        RetentionSummary,
    )

# The deletion commits right after the workflow starts: a minute is plenty.
CONFIRM_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=8,
)
# Storage or the database down: keep trying (each attempt is idempotent).
STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
)
STEP_TIMEOUT = timedelta(minutes=5)
STOP_TIMEOUT = timedelta(minutes=3)
# A run of the schedule removes at most this many batches of each kind; the next run goes on.
MAX_BATCHES = 50


@workflow.defn(name=PROJECT_CLEANUP_WORKFLOW)
class ProjectCleanupWorkflow:
    @workflow.run
    async def run(self, contents: ProjectContents) -> CleanupSummary:
        try:
            await workflow.execute_activity(
                CONFIRM_PROJECT_DELETED,
                contents.project_id,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=CONFIRM_RETRY,
            )
        except ActivityError:
            workflow.logger.warning("project %s was not deleted: nothing removed", contents)
            return CleanupSummary(skipped=True)
        stopped = 0
        if contents.running_workflow_ids:
            stopped = await workflow.execute_activity(
                STOP_PROJECT_JOBS,
                contents.running_workflow_ids,
                result_type=int,
                start_to_close_timeout=STOP_TIMEOUT,
                heartbeat_timeout=timedelta(seconds=20),
                retry_policy=STEP_RETRY,
            )
        summary: CleanupSummary = await workflow.execute_activity(
            DELETE_PROJECT_OBJECTS,
            contents,
            result_type=CleanupSummary,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=STEP_RETRY,
        )
        summary.workflows_stopped = stopped
        return summary


@workflow.defn(name=RETENTION_WORKFLOW)
class RetentionWorkflow:
    @workflow.run
    async def run(self) -> RetentionSummary:
        summary = RetentionSummary()
        for _ in range(MAX_BATCHES):
            builds = await self._batch(EXPIRE_BUILDS)
            summary.builds_expired += builds.rows
            if not builds.full:
                break
        for _ in range(MAX_BATCHES):
            sources = await self._batch(EXPIRE_SOURCES)
            summary.sources_expired += sources.rows
            summary.source_objects_deleted += sources.objects
            if not sources.full:
                break
        orphans: list[int] = await workflow.execute_activity(
            SWEEP_ORPHANS,
            result_type=list[int],
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=STEP_RETRY,
        )
        summary.orphan_builds_deleted, summary.orphan_sources_deleted = orphans
        return summary

    async def _batch(self, activity_name: str) -> ExpiredBatch:
        batch: ExpiredBatch = await workflow.execute_activity(
            activity_name,
            result_type=ExpiredBatch,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=STEP_RETRY,
        )
        return batch
