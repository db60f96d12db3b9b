"""Notifications carry an optional dedupe key, unique per user: a job's outcome is announced
once however often the activity that announces it is retried.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("dedupe_key", sa.String(length=200), nullable=True))
        batch.create_unique_constraint(
            "uq_notifications_user_dedupe_key", ["user_id", "dedupe_key"]
        )


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_constraint("uq_notifications_user_dedupe_key", type_="unique")
        batch.drop_column("dedupe_key")
