"""Users, projects, AI requests and preview logs.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("username", sa.String(32), nullable=False),
        sa.Column("password_hash", sa.String(100), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("last_login", TIMESTAMP, nullable=True),
        sa.Column("preferences", JSON, nullable=False),
        sa.Column("roles", JSON, nullable=False),
        sa.UniqueConstraint("email", name="uq_users_email"),
    )
    op.create_index(
        "uq_users_username_lower",
        "users",
        [sa.text("lower(username)")],
        unique=True,
        postgresql_ops={"lower(username)": "text_pattern_ops"},
    )

    op.create_table(
        "projects",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "owner_id", sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("config", JSON, nullable=False),
    )
    op.create_index(
        "uq_projects_owner_name_lower",
        "projects",
        ["owner_id", sa.text("lower(name)")],
        unique=True,
    )
    op.create_index("ix_projects_owner_created", "projects", ["owner_id", "created_at"])

    op.create_table(
        "ai_requests",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "project_id",
            sa.Uuid(),
            sa.ForeignKey("projects.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "user_id", sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("file_path", sa.String(1024), nullable=False),
        sa.Column("job_type", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("provider", sa.String(64), nullable=True),
        sa.Column("input_text", sa.Text(), nullable=False),
        sa.Column("output_text", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("completed_at", TIMESTAMP, nullable=True),
    )
    op.create_index("ix_ai_requests_project_created", "ai_requests", ["project_id", "created_at"])
    op.create_index("ix_ai_requests_user_id", "ai_requests", ["user_id"])

    op.create_table(
        "preview_logs",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "project_id",
            sa.Uuid(),
            sa.ForeignKey("projects.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "user_id", sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("timestamp", TIMESTAMP, nullable=False),
        sa.Column("bundle_size", sa.BigInteger(), nullable=True),
        sa.Column("storage_url", sa.String(2048), nullable=True),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
    )
    op.create_index(
        "ix_preview_logs_project_timestamp", "preview_logs", ["project_id", "timestamp"]
    )
    op.create_index("ix_preview_logs_user_id", "preview_logs", ["user_id"])


def downgrade() -> None:
    op.drop_table("preview_logs")
    op.drop_table("ai_requests")
    op.drop_table("projects")
    op.drop_index("uq_users_username_lower", table_name="users")
    op.drop_table("users")
