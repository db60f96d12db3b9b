"""Alembic migrations; `migrations.runner` applies them."""
