"""Cleanup: what a deleted project leaves behind, and preview data past its retention. The
workflows' and activities' names and the data they exchange."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, Field

PROJECT_CLEANUP_WORKFLOW = "ProjectCleanupWorkflow"
RETENTION_WORKFLOW = "RetentionWorkflow"

CONFIRM_PROJECT_DELETED = "confirm_project_deleted"
STOP_PROJECT_JOBS = "stop_project_jobs"
DELETE_PROJECT_OBJECTS = "delete_project_objects"
EXPIRE_BUILDS = "expire_builds"
EXPIRE_SOURCES = "expire_sources"
SWEEP_ORPHANS = "sweep_orphans"

# The id of the schedule that starts RetentionWorkflow (prefixed like the task queues).
RETENTION_SCHEDULE = "preview-retention"


def project_cleanup_workflow_id(project_id: uuid.UUID) -> str:
    return f"project-cleanup-{project_id}"


class ProjectContents(BaseModel):
    """What a project had when it was deleted: the workflows of its jobs that had not ended,
    its builds (each a folder of objects) and the hashes of its sources (objects that other
    projects may share)."""

    project_id: uuid.UUID
    running_workflow_ids: list[str] = Field(default_factory=list)
    build_ids: list[str] = Field(default_factory=list)
    source_hashes: list[str] = Field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.running_workflow_ids or self.build_ids or self.source_hashes)


class CleanupSummary(BaseModel):
    """What a cleanup removed."""

    workflows_stopped: int = 0
    builds_deleted: int = 0
    sources_deleted: int = 0
    sources_kept: int = Field(default=0, description="Still used by another project")
    skipped: bool = Field(default=False, description="The project was not deleted after all")


class ExpiredBatch(BaseModel):
    """One batch of an expiry pass: how many rows went, how many objects, and whether the
    batch was full (more may be waiting)."""

    rows: int = 0
    objects: int = 0
    full: bool = False


class RetentionSummary(BaseModel):
    builds_expired: int = 0
    sources_expired: int = 0
    source_objects_deleted: int = 0
    orphan_builds_deleted: int = 0
    orphan_sources_deleted: int = 0
