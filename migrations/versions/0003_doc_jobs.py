"""Documentation jobs: what a job needs on ai_requests (its key, language, outcome, usage).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    # No documentation job was ever recorded before this revision: no defaults are needed.
    with op.batch_alter_table("ai_requests") as table:
        table.add_column(sa.Column("job_key", sa.String(64), nullable=False))
        table.add_column(sa.Column("language", sa.String(16), nullable=False))
        table.add_column(sa.Column("model", sa.String(128), nullable=True))
        table.add_column(sa.Column("tokens_in", sa.Integer(), nullable=True))
        table.add_column(sa.Column("tokens_out", sa.Integer(), nullable=True))
        table.add_column(sa.Column("duration_ms", sa.Integer(), nullable=True))
        table.add_column(sa.Column("error_code", sa.String(32), nullable=True))
        table.add_column(sa.Column("error_details", JSON, nullable=True))
        table.add_column(sa.Column("result", JSON, nullable=True))
        table.create_unique_constraint("uq_ai_requests_job_key", ["job_key"])


def downgrade() -> None:
    with op.batch_alter_table("ai_requests") as table:
        table.drop_constraint("uq_ai_requests_job_key", type_="unique")
        for column in (
            "result",
            "error_details",
            "error_code",
            "duration_ms",
            "tokens_out",
            "tokens_in",
            "model",
            "language",
            "job_key",
        ):
            table.drop_column(column)
