"""Preview builds: build ids and errors on preview_logs; sources, shares, notifications.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    # No preview was ever recorded before this revision: the new columns need no defaults.
    with op.batch_alter_table("preview_logs") as table:
        table.add_column(sa.Column("build_id", sa.String(32), nullable=False))
        table.add_column(sa.Column("source_hash", sa.String(64), nullable=False))
        table.add_column(sa.Column("entry_file", sa.String(1024), nullable=False))
        table.add_column(sa.Column("environment", sa.String(16), nullable=False))
        table.add_column(sa.Column("error_code", sa.String(32), nullable=True))
        table.add_column(sa.Column("error_message", sa.Text(), nullable=True))
        table.add_column(sa.Column("error_details", JSON, nullable=True))
        table.add_column(sa.Column("completed_at", TIMESTAMP, nullable=True))
        table.create_unique_constraint("uq_preview_logs_build_id", ["build_id"])

    op.create_table(
        "preview_sources",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "project_id",
            sa.Uuid(),
            sa.ForeignKey("projects.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("source_hash", sa.String(64), nullable=False),
        sa.Column("file_count", sa.Integer(), nullable=False),
        sa.Column("total_bytes", sa.BigInteger(), nullable=False),
        sa.Column("paths", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.UniqueConstraint("project_id", "source_hash", name="uq_preview_sources_project_hash"),
    )

    op.create_table(
        "preview_shares",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "preview_id",
            sa.Uuid(),
            sa.ForeignKey("preview_logs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "recipient_id",
            sa.Uuid(),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "shared_by", sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.UniqueConstraint("preview_id", "recipient_id", name="uq_preview_shares_recipient"),
    )
    op.create_index("ix_preview_shares_recipient_id", "preview_shares", ["recipient_id"])

    op.create_table(
        "notifications",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column(
            "user_id", sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
    )
    op.create_index("ix_notifications_user_id_id", "notifications", ["user_id", "id"])


def downgrade() -> None:
    op.drop_table("notifications")
    op.drop_table("preview_shares")
    op.drop_table("preview_sources")
    with op.batch_alter_table("preview_logs") as table:
        table.drop_constraint("uq_preview_logs_build_id", type_="unique")
        for column in (
            "completed_at",
            "error_details",
            "error_message",
            "error_code",
            "environment",
            "entry_file",
            "source_hash",
            "build_id",
        ):
            table.drop_column(column)
