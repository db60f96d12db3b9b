"""Access tokens revoked by a password change: users.token_generation.

Every token carries the generation it was issued under (claim `gen`, 0 for tokens issued
before this revision); a password change moves the user's on, so earlier tokens stop working.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE (SQLite has both since 3.35): batch mode would copy `users`, and SQLite's
# reflection cannot carry its expression index (uq_users_username_lower) across.


def upgrade() -> None:
    op.add_column(
        "users", sa.Column("token_generation", sa.Integer(), server_default="0", nullable=False)
    )


def downgrade() -> None:
    op.drop_column("users", "token_generation")
