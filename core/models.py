"""SQLModel tables. The Alembic migrations in `migrations/` are the authority on the schema;
these classes mirror them for queries (a test checks that the two agree)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from contracts.docs import doc_workflow_id
from contracts.previews import preview_workflow_id
from core.clock import utc_now
from core.db import JSONType, UTCDateTime

DEFAULT_ROLES = ("user",)


class User(SQLModel, table=True):
    __tablename__ = "users"
    __table_args__ = (sa.UniqueConstraint("email", name="uq_users_email"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    email: str = Field(max_length=254)
    username: str = Field(max_length=32)
    password_hash: str = Field(max_length=100)
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime, nullable=False)
    last_login: datetime | None = Field(default=None, sa_type=UTCDateTime)
    preferences: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType, nullable=False)
    roles: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ROLES), sa_type=JSONType, nullable=False
    )
    # Moved on by every password change; access tokens carry the value they were issued
    # under (claim `gen`), so a change revokes all earlier tokens.
    token_generation: int = Field(
        default=0, sa_column_kwargs={"server_default": "0"}, nullable=False
    )


# Usernames keep the case they were registered with but are unique ignoring it; emails are
# stored lower-cased, so a plain unique index suffices for them. On Postgres the operator class
# lets the same index serve the username-prefix search (LIKE 'ab%') in any collation.
sa.Index(
    "uq_users_username_lower",
    sa.func.lower(sa.inspect(User).local_table.c.username).label("username_lower"),
    unique=True,
    postgresql_ops={"username_lower": "text_pattern_ops"},
)


class Project(SQLModel, table=True):
    __tablename__ = "projects"
    __table_args__ = (
        sa.Index("uq_projects_owner_name_lower", "owner_id", sa.text("lower(name)"), unique=True),
        sa.Index("ix_projects_owner_created", "owner_id", "created_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    owner_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE")
    name: str = Field(max_length=100)
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime, nullable=False)
    config: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType, nullable=False)


class JobRecord(SQLModel):
    """The columns every kind of job shares, in its own table: whose it is, its status (a
    phase of `contracts`), when the current run was requested and ended, and why it failed.
    `services/jobs/lifecycle.py` reads and writes them the same way for every kind."""

    project_id: uuid.UUID = Field(foreign_key="projects.id", ondelete="CASCADE")
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", index=True)
    status: str = Field(max_length=16)
    # Reset when a failed or cancelled job is asked for again and runs anew.
    requested_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime, nullable=False)
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    duration_ms: int | None = None
    error_code: str | None = Field(default=None, max_length=32)
    error_message: str | None = Field(default=None, sa_type=sa.Text)
    error_details: dict[str, Any] | None = Field(default=None, sa_type=JSONType)

    @property
    def workflow_id(self) -> str:
        """The id of the workflow that runs this job (one run at a time)."""
        raise NotImplementedError

    def forget_outcome(self) -> None:
        """Clear what the last run left, before another run."""
        self.completed_at = None
        self.duration_ms = None
        self.error_code = self.error_message = None
        self.error_details = None


class AIRequest(JobRecord, table=True):
    """One AI documentation job (filled by the docs workflow)."""

    __tablename__ = "ai_requests"
    __table_args__ = (
        sa.Index("ix_ai_requests_project_requested", "project_id", "requested_at"),
        sa.UniqueConstraint("job_key", name="uq_ai_requests_job_key"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    file_path: str = Field(max_length=1024)
    job_type: str = Field(max_length=32)
    provider: str | None = Field(default=None, max_length=64)
    input_text: str = Field(sa_type=sa.Text)
    output_text: str | None = Field(default=None, sa_type=sa.Text)
    # Identical requests (project, job type, path, language, content) share the job.
    job_key: str = Field(max_length=64)
    language: str = Field(max_length=16)
    model: str | None = Field(default=None, max_length=128)
    tokens_in: int | None = None
    tokens_out: int | None = None
    # The checked edits, patched content, diff and suggestions (services.docs.schemas.DocEdits).
    result: dict[str, Any] | None = Field(default=None, sa_type=JSONType)

    @property
    def workflow_id(self) -> str:
        return doc_workflow_id(self.id)

    def forget_outcome(self) -> None:
        super().forget_outcome()
        self.provider = self.model = self.output_text = None
        self.tokens_in = self.tokens_out = None
        self.result = None


class PreviewLog(JobRecord, table=True):
    """One preview build: identical requests (same project, sources, platform, entry file,
    environment and toolchain) share the row, its `build_id` and its workflow run."""

    __tablename__ = "preview_logs"
    __table_args__ = (
        sa.Index("ix_preview_logs_project_requested", "project_id", "requested_at"),
        sa.UniqueConstraint("build_id", name="uq_preview_logs_build_id"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    build_id: str = Field(max_length=32)
    source_hash: str = Field(max_length=64)
    entry_file: str = Field(max_length=1024)
    environment: str = Field(max_length=16)
    platform: str = Field(max_length=16)
    bundle_size: int | None = Field(default=None, sa_type=sa.BigInteger)
    storage_url: str | None = Field(default=None, max_length=2048)

    @property
    def workflow_id(self) -> str:
        return preview_workflow_id(self.build_id)

    def forget_outcome(self) -> None:
        super().forget_outcome()
        self.bundle_size = None
        self.storage_url = None


class PreviewSource(SQLModel, table=True):
    """A project's uploaded source archive, stored content-addressed in object storage."""

    __tablename__ = "preview_sources"
    __table_args__ = (
        sa.UniqueConstraint("project_id", "source_hash", name="uq_preview_sources_project_hash"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    project_id: uuid.UUID = Field(foreign_key="projects.id", ondelete="CASCADE")
    source_hash: str = Field(max_length=64)
    file_count: int
    total_bytes: int = Field(sa_type=sa.BigInteger)
    # The archive's file paths, so that a build's entry file is checked without downloading it.
    paths: list[str] = Field(default_factory=list, sa_type=JSONType, nullable=False)
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime, nullable=False)


class PreviewShare(SQLModel, table=True):
    """A build shared with another user, who may then open it."""

    __tablename__ = "preview_shares"
    __table_args__ = (
        sa.UniqueConstraint("preview_id", "recipient_id", name="uq_preview_shares_recipient"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    preview_id: uuid.UUID = Field(foreign_key="preview_logs.id", ondelete="CASCADE")
    recipient_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", index=True)
    shared_by: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE")
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime, nullable=False)


class Notification(SQLModel, table=True):
    """A job state change for one user; `id` increases, so clients poll with `after=<id>`."""

    __tablename__ = "notifications"
    __table_args__ = (
        sa.Index("ix_notifications_user_id_id", "user_id", "id"),
        sa.UniqueConstraint("user_id", "dedupe_key", name="uq_notifications_user_dedupe_key"),
    )

    id: int | None = Field(
        default=None,
        primary_key=True,
        sa_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite"),  # SQLite: rowid alias
    )
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE")
    type: str = Field(max_length=32)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType, nullable=False)
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime, nullable=False)
    # One notification per event however often its sender retries (a job's outcome: see
    # `activities`); NULL for events sent once (several NULLs never collide).
    dedupe_key: str | None = Field(default=None, max_length=200)
