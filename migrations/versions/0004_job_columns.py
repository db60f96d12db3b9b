"""One job lifecycle: ai_requests and preview_logs name their shared columns alike.

`ai_requests.created_at` and `preview_logs.timestamp` become `requested_at` (when the current
run was requested), `ai_requests.error` becomes `error_message`. Renames keep every row.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _rename(renames: dict[str, dict[str, str]], indexes: list[tuple[str, str, str, str]]) -> None:
    """Columns renamed per table, and each (table, old index, new index, its time column)."""
    # The indexes over a renamed column are dropped first and made again after: SQLite cannot
    # rename an index, and its batch mode copies a table whose indexes it must reflect.
    for table, old_index, _, _ in indexes:
        op.drop_index(old_index, table_name=table)
    for table, columns in renames.items():
        with op.batch_alter_table(table) as batch:
            for old, new in columns.items():
                batch.alter_column(old, new_column_name=new)
    for table, _, new_index, column in indexes:
        op.create_index(new_index, table, ["project_id", column])


def upgrade() -> None:
    _rename(
        {
            "ai_requests": {"created_at": "requested_at", "error": "error_message"},
            "preview_logs": {"timestamp": "requested_at"},
        },
        [
            (
                "ai_requests",
                "ix_ai_requests_project_created",
                "ix_ai_requests_project_requested",
                "requested_at",
            ),
            (
                "preview_logs",
                "ix_preview_logs_project_timestamp",
                "ix_preview_logs_project_requested",
                "requested_at",
            ),
        ],
    )


def downgrade() -> None:
    _rename(
        {
            "ai_requests": {"requested_at": "created_at", "error_message": "error"},
            "preview_logs": {"requested_at": "timestamp"},
        },
        [
            (
                "ai_requests",
                "ix_ai_requests_project_requested",
                "ix_ai_requests_project_created",
                "created_at",
            ),
            (
                "preview_logs",
                "ix_preview_logs_project_requested",
                "ix_preview_logs_project_timestamp",
                "timestamp",
            ),
        ],
    )
