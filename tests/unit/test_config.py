from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from cli.main import app as cli
from core.config import Settings, load_settings

STRONG_SECRET = "k" * 48

ALL_VARIABLES = [
    "PORT", "BASE_URL", "JWT_SECRET", "DATABASE_URL", "POSTGRES_HOST", "POSTGRES_PORT",
    "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "REDIS_URL", "REDIS_HOST",
    "REDIS_PORT", "REDIS_PASSWORD", "REDIS_DB", "EMAIL_PROVIDER", "RESEND_API_KEY",
    "OPENAI_API_KEY", "LOCAL_AI_MODEL_PATH", "LOCAL_AI_ENABLED", "PREVIEW_MAX_TIMEOUT_MS",
    "LOG_LEVEL", "R2_ENDPOINT", "R2_BUCKET", "R2_ACCESS_KEY", "R2_SECRET_KEY",
    "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No variable from the developer's shell, no .env from the working directory."""
    for name in [*ALL_VARIABLES, "ENVIRONMENT", "SECRETS_DIR", "RATE_LIMIT_BACKEND"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_every_documented_variable_is_a_setting() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    assert set(ALL_VARIABLES) <= fields


def test_every_documented_variable_is_in_env_example() -> None:
    example = (Path(__file__).parents[2] / ".env.example").read_text()
    for name in ALL_VARIABLES:
        assert f"{name}=" in example, name


def test_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9001")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("LOCAL_AI_ENABLED", "false")
    monkeypatch.setenv("PREVIEW_MAX_TIMEOUT_MS", "45000")
    monkeypatch.setenv("TEMPORAL_ADDRESS", "temporal:7233")
    settings = Settings()
    assert settings.port == 9001
    assert settings.log_level == "DEBUG"
    assert settings.local_ai_enabled is False
    assert settings.preview_max_timeout_ms == 45000
    assert settings.temporal_address == "temporal:7233"


def test_from_dotenv_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("R2_BUCKET=from-dotenv\nPORT=7000\n")
    monkeypatch.setenv("PORT", "7100")
    settings = Settings()
    assert settings.r2_bucket == "from-dotenv"
    assert settings.port == 7100  # the environment wins over .env


def test_from_secrets_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "JWT_SECRET").write_text(STRONG_SECRET)
    (secrets / "openai_api_key").write_text("sk-from-secret-file")
    (secrets / "POSTGRES_PASSWORD").write_text("pg-from-secret")
    (tmp_path / ".env").write_text("POSTGRES_PASSWORD=pg-from-dotenv\n")
    monkeypatch.setenv("SECRETS_DIR", str(secrets))
    settings = load_settings()
    assert settings.jwt_secret is not None
    assert settings.jwt_secret.get_secret_value() == STRONG_SECRET
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == "sk-from-secret-file"
    # .env and the environment come before Docker secrets.
    assert settings.postgres_password.get_secret_value() == "pg-from-dotenv"
    assert "pg-from-dotenv" not in repr(settings)  # secrets never print


def test_missing_secrets_directory_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRETS_DIR", "/nonexistent/secrets")
    assert load_settings().openai_api_key is None


def test_database_url_from_parts_and_forms() -> None:
    parts = Settings(
        postgres_host="db", postgres_user="hive sync", postgres_password="p@ss:word",
        postgres_db="hs",
    )  # fmt: skip
    assert parts.sqlalchemy_url == "postgresql+psycopg://hive%20sync:p%40ss%3Aword@db:5432/hs"
    assert Settings(database_url="postgres://u@h/d").sqlalchemy_url == "postgresql+psycopg://u@h/d"
    assert Settings(database_url="sqlite:///x.db").sqlalchemy_url == "sqlite+aiosqlite:///x.db"


def test_redis_url_from_parts() -> None:
    assert Settings().redis_dsn == "redis://127.0.0.1:6379/0"
    settings = Settings(redis_host="cache", redis_password="s/cret", redis_db=2)
    assert settings.redis_dsn == "redis://:s%2Fcret@cache:6379/2"
    assert Settings(redis_url="redis://other:1/3").redis_dsn == "redis://other:1/3"


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        (None, "is missing"),
        ("", "is missing"),
        ("change-me", "default/example value"),
        ("short-secret", "shorter than 32 bytes"),
    ],
)
def test_production_refuses_a_weak_jwt_secret(secret: str | None, problem: str) -> None:
    values = {"environment": "production"}
    if secret is not None:
        values["jwt_secret"] = secret
    with pytest.raises(ValidationError) as raised:
        Settings(**values)  # type: ignore[arg-type]
    assert "JWT_SECRET" in str(raised.value)
    assert problem in str(raised.value)


def test_production_accepts_a_strong_secret() -> None:
    settings = Settings(environment="production", jwt_secret=STRONG_SECRET)
    assert settings.jwt_secret_generated is False


def test_development_generates_a_secret_when_missing() -> None:
    first, second = Settings(), Settings()
    assert first.jwt_secret_generated
    assert len(first.jwt_secret_bytes) >= 32
    assert first.jwt_secret_bytes != second.jwt_secret_bytes


def test_cli_names_the_variable_when_production_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("JWT_SECRET", "too-short")
    result = CliRunner().invoke(cli, ["api"])
    assert result.exit_code == 2
    assert "JWT_SECRET" in result.output
    assert "too-short" not in result.output


def test_secret_values_for_redaction() -> None:
    settings = Settings(jwt_secret=STRONG_SECRET, openai_api_key="sk-abcdef", r2_secret_key="abc")
    assert STRONG_SECRET in settings.secret_values()
    assert "sk-abcdef" in settings.secret_values()
    assert "abc" not in settings.secret_values()  # too short to mask safely
