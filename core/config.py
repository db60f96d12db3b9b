"""All configuration of the service, in one pydantic-settings class.

Values come, highest priority first, from keyword arguments, the environment, a `.env` file and
Docker secrets (one file per variable in `/run/secrets`, or the directory named by SECRETS_DIR).
Field names are the lower-case forms of the documented variables (`JWT_SECRET` -> `jwt_secret`).
"""

from __future__ import annotations

import os
import secrets
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["development", "test", "production"]

MIN_JWT_SECRET_BYTES = 32
DEFAULT_SECRETS_DIR = "/run/secrets"
# Values that appear in .env.example and documentation: never acceptable in production.
PLACEHOLDER_SECRETS = frozenset(
    {"change-me", "changeme", "secret", "dev-secret", "change-me-to-a-random-64-char-string"}
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        # `VAR=` (as in .env.example) means "use the default", not "the empty string".
        env_ignore_empty=True,
    )

    environment: Environment = "development"
    service_name: str = "hivesync-api"

    # HTTP
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    base_url: str = "http://127.0.0.1:8000"
    forwarded_allow_ips: str = "127.0.0.1"
    max_request_body_bytes: Annotated[int, Field(ge=1024)] = 1024 * 1024

    # Access tokens (JWT HS256)
    jwt_secret: SecretStr | None = None
    jwt_issuer: str = "hivesync"
    jwt_audience: str = "hivesync-api"
    access_token_expire_minutes: Annotated[int, Field(ge=1, le=60 * 24 * 30)] = 60 * 24

    # Database: DATABASE_URL wins over the POSTGRES_* parts.
    database_url: str | None = None
    postgres_host: str = "127.0.0.1"
    postgres_port: int = 5432
    postgres_user: str = "postgres"
    postgres_password: SecretStr = SecretStr("")
    postgres_db: str = "hivesync"
    db_pool_size: Annotated[int, Field(ge=1)] = 10
    db_max_overflow: Annotated[int, Field(ge=0)] = 10
    # How long a request waits for a pooled connection before failing.
    db_pool_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    db_connect_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    # Check each pooled connection before use (one extra round trip per request) so that a
    # database restart costs no failed requests; off trades that for latency.
    db_pool_pre_ping: bool = True

    # Redis: REDIS_URL wins over the REDIS_* parts.
    redis_url: str | None = None
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_password: SecretStr | None = None
    redis_db: Annotated[int, Field(ge=0)] = 0
    redis_key_prefix: str = "hivesync:"

    # API worker processes (`hivesync api --workers` overrides; uvicorn reads the same
    # WEB_CONCURRENCY). Production refuses RATE_LIMIT_BACKEND=memory with more than one.
    web_concurrency: Annotated[int, Field(ge=1)] = 1

    # Rate limits and quotas. "redis" shares every counter among all API replicas and workers;
    # "memory" keeps them in the process: only for a single-process dev run (refused in
    # production with more than one API worker). With "redis", a Redis outage fails closed:
    # logins, registrations, password checks and everything a quota guards answer 503.
    rate_limit_backend: Literal["redis", "memory"] = "redis"
    # Login attempts per (client address, login name) in the window; a success resets it.
    login_rate_limit_per_user: Annotated[int, Field(ge=1)] = 5
    # Login attempts per client address in the window, whatever the login name.
    login_rate_limit_per_ip: Annotated[int, Field(ge=1)] = 20
    login_rate_limit_window_s: Annotated[int, Field(ge=1)] = 60
    # Password guesses at one account from every address together (logins, and the
    # `current_password` of PATCH /users/me), per LOGIN_RATE_LIMIT_ACCOUNT_WINDOW_S: rotating
    # addresses gives no more. A correct password resets it. While it is exhausted even the
    # right password answers 429, so an attacker can hold an account's logins off for a window.
    login_rate_limit_per_account: Annotated[int, Field(ge=1)] = 10
    login_rate_limit_account_window_s: Annotated[int, Field(ge=1)] = 900
    register_rate_limit_per_ip: Annotated[int, Field(ge=1)] = 10
    register_rate_limit_window_s: Annotated[int, Field(ge=1)] = 3600
    # Quotas per account, counted in Redis (shared by every replica). Over one: 429 RATE_LIMIT
    # with Retry-After. Running builds and documentation jobs: a new or re-run job takes a
    # slot (joining an identical running job, or an answer from a completed one, takes none);
    # a slot is freed when the job's row says it ended, or at the latest when its lease ends,
    # so that a job whose end was never recorded cannot hold it forever.
    quota_running_builds: Annotated[int, Field(ge=1)] = 3
    quota_build_lease_s: Annotated[int, Field(ge=60)] = 900
    quota_running_doc_jobs: Annotated[int, Field(ge=1)] = 3
    quota_doc_job_lease_s: Annotated[int, Field(ge=60)] = 3600
    # The longest Retry-After that a running-jobs quota answers (a slot may free any time).
    quota_retry_after_s: Annotated[int, Field(ge=1)] = 15
    # New shares (a repeated share is free) per account per QUOTA_SHARES_WINDOW_S.
    quota_shares: Annotated[int, Field(ge=1)] = 50
    quota_shares_window_s: Annotated[int, Field(ge=1)] = 3600
    # An open notifications WebSocket closes (code 4401) when its token expires, and within
    # this many seconds of a password change that revokes it.
    ws_token_recheck_s: Annotated[float, Field(gt=0)] = 60.0

    # bcrypt runs in its own small thread pool; None means one thread per CPU core.
    password_hash_concurrency: Annotated[int, Field(ge=1)] | None = None

    # Email
    email_provider: Literal["console", "resend"] = "console"
    resend_api_key: SecretStr | None = None

    # AI engine: local model (OpenAI-compatible, served by `hivesync inference`), then OpenAI
    # primary, then OpenAI secondary. A provider without a key (or disabled) is skipped.
    local_ai_enabled: bool = True
    # Folder (or GGUF file) of the local model; None = the embedded SmolLM2-135M-Instruct.
    local_ai_model_path: str | None = None
    local_ai_base_url: str = "http://127.0.0.1:8010/v1"
    # The model name the local server announces (and that requests name).
    local_ai_model: str = "local"
    openai_api_key: SecretStr | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    openai_model: str = "gpt-4o-mini"
    openai_secondary_api_key: SecretStr | None = None
    openai_secondary_base_url: str = "https://api.openai.com/v1"
    openai_secondary_model: str = "gpt-4o-mini"
    # One provider call: connect and total time before the next provider is tried.
    ai_connect_timeout_s: Annotated[float, Field(gt=0)] = 3.0
    ai_request_timeout_s: Annotated[float, Field(gt=0)] = 120.0
    # A 429 whose Retry-After is within this budget is waited for, once, before failing over.
    ai_retry_after_budget_s: Annotated[float, Field(ge=0)] = 2.0
    # Circuit breaker (shared through Redis): after this many failures in a row a provider is
    # skipped for the cool-off, then tried again.
    ai_breaker_failures: Annotated[int, Field(ge=1)] = 3
    ai_breaker_cooloff_s: Annotated[float, Field(gt=0)] = 30.0
    # Generation requests of one documentation job in flight at once.
    docs_max_concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    # Model calls one documentation job plans at most (one per file summary, docstring,
    # comment or rename; the retries of one call are not counted). A file that asks for more
    # is documented in part: the job's summary says how many items were left out.
    docs_max_model_calls: Annotated[int, Field(ge=1, le=1000)] = 200

    # The local model server (`hivesync inference`, Ray Serve).
    inference_host: str = "127.0.0.1"
    inference_port: Annotated[int, Field(ge=1, le=65535)] = 8010
    # Per replica: GPUs (1 on the GPU pool, 0 on CPU) and CPUs (fractional on small machines).
    inference_num_gpus: Annotated[float, Field(ge=0)] = 0
    inference_num_cpus: Annotated[float, Field(gt=0)] = 0.5
    inference_min_replicas: Annotated[int, Field(ge=0)] = 1
    inference_max_replicas: Annotated[int, Field(ge=1)] = 1
    # Requests batched together by a replica, and how long a batch waits to fill.
    inference_max_batch_size: Annotated[int, Field(ge=1)] = 8
    inference_batch_wait_s: Annotated[float, Field(ge=0)] = 0.05
    # Where a GGUF model is converted once to a transformers folder.
    inference_cache_dir: Path = Path(".data/models")
    # Torch threads of a replica; None = its INFERENCE_NUM_CPUS rounded up under Ray, every CPU
    # of the process when the model runs in process.
    inference_torch_threads: Annotated[int, Field(ge=1)] | None = None
    # Ray's own directory (its logs are in session_latest/logs): short and absolute, since Ray
    # puts Unix sockets in it and their paths may not exceed 107 bytes.
    inference_ray_dir: Path = Path(tempfile.gettempdir()) / "hivesync-ray"
    # How long a model call may wait in gpu_tasks for a worker whose model server is ready
    # before its job fails with AI_ERROR (its schedule-to-start timeout): long enough for a GPU
    # pool to scale up from zero (a node, an image pull, the model loaded: minutes).
    inference_wait_timeout_s: Annotated[float, Field(gt=0)] = 900.0
    # A gpu_tasks worker with no model call for this long, and nothing waiting, stops polling
    # and probing its model server (so that a pool scaled to zero stays there) until work
    # waits in its queue again; 0 = poll and probe for good (a server that is always up).
    inference_worker_idle_s: Annotated[float, Field(ge=0)] = 120.0

    # GPU autoscaler: policy (`hivesync autoscaler`; inference/autoscaler/policy.py says how it
    # decides). Replicas of the GPU pool's model deployment: the minimum (0 = scale to zero when
    # idle) and the maximum.
    autoscaler_min_replicas: Annotated[int, Field(ge=0)] = 0
    autoscaler_max_replicas: Annotated[int, Field(ge=1)] = 4
    # Tasks waiting in gpu_tasks that one replica is expected to absorb: the backlog asks for
    # ceil(backlog / this) replicas.
    autoscaler_target_backlog_per_replica: Annotated[int, Field(ge=1)] = 16
    # Replicas added per change at most, unless the oldest waiting task has waited this long:
    # then straight to what the backlog asks for (even inside a cooldown that follows a scale-up).
    autoscaler_scale_up_step: Annotated[int, Field(ge=1)] = 2
    autoscaler_urgent_backlog_age_s: Annotated[float, Field(ge=0)] = 60.0
    # Up only when the backlog exceeds what the replicas handle by this fraction; down only when
    # it stays below what one replica fewer handles, less this fraction.
    autoscaler_hysteresis: Annotated[float, Field(ge=0, lt=1)] = 0.25
    # After each change no other change for this long (except leaving zero when work waits, and
    # an urgent scale-up); a step down also needs this long of readings that agree.
    autoscaler_cooldown_s: Annotated[float, Field(ge=0)] = 180.0
    # No backlog and GPUs idle for this long: down to the minimum.
    autoscaler_idle_s: Annotated[float, Field(ge=0)] = 900.0
    # GPU use (0..1, when AUTOSCALER_PROMETHEUS_URL is set) above which waiting work warrants one
    # more replica (and no step down), and below which the GPUs count as idle.
    autoscaler_gpu_busy_utilization: Annotated[float, Field(gt=0, le=1)] = 0.85
    autoscaler_gpu_idle_utilization: Annotated[float, Field(ge=0, lt=1)] = 0.05

    # GPU autoscaler: runtime (`hivesync autoscaler`). Every AUTOSCALER_INTERVAL_S it reads
    # gpu_tasks' backlog (and GPU use when AUTOSCALER_PROMETHEUS_URL is set), decides, and writes
    # the Serve deployment's autoscaling floor (min_replicas) into the RayService's
    # serveConfigV2. Dry-run logs and reports the patch it would make and patches nothing.
    autoscaler_interval_s: Annotated[float, Field(gt=0)] = 15.0
    autoscaler_dry_run: bool = False
    autoscaler_namespace: str = "hivesync"
    autoscaler_rayservice: str = "hivesync-inference"
    # The application and deployment in serveConfigV2 whose min_replicas the autoscaler sets.
    autoscaler_serve_app: str = "hivesync-inference"
    autoscaler_serve_deployment: str = "LocalModel"
    # Prometheus's base URL (e.g. http://prometheus:9090); None = GPU use is not read.
    autoscaler_prometheus_url: str | None = None
    # A PromQL query answering the GPU pool's mean utilisation as a 0..1 fraction.
    autoscaler_gpu_query: str = "avg(DCGM_FI_DEV_GPU_UTIL) / 100"
    # Where /status (JSON), /metrics (Prometheus) and /health are served.
    autoscaler_host: str = "127.0.0.1"
    autoscaler_port: Annotated[int, Field(ge=1, le=65535)] = 8020

    # Preview builds
    preview_max_timeout_ms: Annotated[int, Field(ge=100)] = 120_000
    # Request bodies that carry sources (inline files, archives) may be this large.
    max_source_upload_bytes: Annotated[int, Field(ge=1024)] = 72 * 1024 * 1024
    # The Node toolchain (package.json, server.js) and where builds and Metro's cache live.
    bundler_dir: Path = Path(__file__).resolve().parent.parent / "bundler"
    bundler_work_dir: Path = Path(".data/bundler")
    # Metro's transform cache, shared by every bundler process of the machine (default:
    # `<bundler_work_dir>/cache`). Keep it between deployments: a cold cache costs ~14 s.
    bundler_cache_dir: Path | None = None
    bundler_processes: Annotated[int, Field(ge=1, le=16)] = 1
    # A bundler process is restarted after this many builds or above this resident memory.
    bundler_max_builds: Annotated[int, Field(ge=1)] = 200
    bundler_max_rss_mb: Annotated[int, Field(ge=64)] = 700

    # Object storage (Cloudflare R2, S3 or MinIO)
    r2_endpoint: str | None = None
    r2_bucket: str = "hivesync-previews"
    r2_access_key: SecretStr | None = None
    r2_secret_key: SecretStr | None = None
    r2_region: str = "auto"
    # Host that clients download from, when it differs from R2_ENDPOINT (signatures cover it).
    r2_public_endpoint: str | None = None
    signed_url_ttl_s: Annotated[int, Field(ge=1, le=7 * 24 * 3600)] = 600

    # Retention of preview data, enforced by a Temporal schedule (`preview-retention`, created
    # by the cpu_tasks worker) that runs RetentionWorkflow every RETENTION_SWEEP_INTERVAL_S.
    # A build (its row and objects) expires this many days after it was built; 0 keeps builds.
    build_retention_days: Annotated[int, Field(ge=0)] = 30
    # An uploaded source expires this many days after its upload or its project's last build
    # of it, whichever is later; its object goes once no project uses it. 0 keeps sources.
    source_retention_days: Annotated[int, Field(ge=0)] = 30
    retention_sweep_interval_s: Annotated[int, Field(ge=60)] = 3600
    # Whether a starting cpu_tasks worker creates (or updates) that schedule. Off where the
    # schedule is managed elsewhere, and in tests, whose many short-lived workers would each
    # leave a schedule of their own behind.
    retention_schedule: bool = True
    # Rows (and their objects) removed per activity call: every batch is one short transaction.
    retention_batch_size: Annotated[int, Field(ge=1, le=1000)] = 200
    # Objects that no row names (left by a deleted project or an upload cut short) are removed
    # once they are older than this.
    orphan_grace_s: Annotated[int, Field(ge=0)] = 3600

    # Temporal
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    # Prepended to the task queue names (cpu_tasks, gpu_tasks), so that several deployments
    # or test runs can share one namespace without taking each other's tasks.
    temporal_task_queue_prefix: str = ""
    # A stopping worker (SIGTERM, or a gpu_tasks worker whose model server went away) stops
    # polling at once and lets its running activities finish for this long, then cancels them
    # (they are retried elsewhere). The longest is a model call (6 min); the Kubernetes
    # manifests give worker pods 30 s more than this to exit.
    worker_shutdown_grace_s: Annotated[float, Field(ge=0)] = 360.0

    # Health (`hivesync health`). The GPU autoscaler's status URL (`hivesync autoscaler` serves
    # it at http://AUTOSCALER_HOST:AUTOSCALER_PORT/status), whose last decision the report shows
    # and which must then answer; unset = no autoscaler to check.
    autoscaler_status_url: str | None = None

    # Logging
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_to_file: bool = True
    log_dir: Path = Path("logs")
    log_file_max_bytes: Annotated[int, Field(ge=1024)] = 10 * 1024 * 1024
    log_file_backups: Annotated[int, Field(ge=0)] = 5

    # Set when no JWT_SECRET was configured outside production and one was generated.
    _jwt_secret_generated: bool = PrivateAttr(default=False)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_jwt_secret(self) -> Settings:
        if self.environment == "production":
            problem = jwt_secret_problem(self.jwt_secret)
            if problem:
                raise ValueError(f"JWT_SECRET {problem}; production refuses to start without it")
        elif self.jwt_secret is None:
            self.jwt_secret = SecretStr(secrets.token_urlsafe(48))
            self._jwt_secret_generated = True
        return self

    @model_validator(mode="after")
    def _check_rate_limit_backend(self) -> Settings:
        problem = rate_limiter_problem(self, self.web_concurrency)
        if problem:
            raise ValueError(problem)
        return self

    @property
    def jwt_secret_generated(self) -> bool:
        return self._jwt_secret_generated

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def sqlalchemy_url(self) -> str:
        """Async SQLAlchemy URL (psycopg 3 for Postgres, aiosqlite for SQLite)."""
        if self.database_url:
            return to_async_database_url(self.database_url)
        password = self.postgres_password.get_secret_value()
        credentials = quote(self.postgres_user, safe="")
        if password:
            credentials += ":" + quote(password, safe="")
        return (
            f"postgresql+psycopg://{credentials}@{self.postgres_host}:{self.postgres_port}"
            f"/{quote(self.postgres_db, safe='')}"
        )

    @property
    def redis_dsn(self) -> str:
        if self.redis_url:
            return self.redis_url
        auth = ""
        if self.redis_password is not None:
            auth = ":" + quote(self.redis_password.get_secret_value(), safe="") + "@"
        return f"redis://{auth}{self.redis_host}:{self.redis_port}/{self.redis_db}"

    def task_queue(self, kind: str) -> str:
        """The Temporal task queue of a kind of work (`cpu_tasks`, `gpu_tasks`)."""
        return self.temporal_task_queue_prefix + kind

    @property
    def jwt_secret_bytes(self) -> bytes:
        assert self.jwt_secret is not None  # set by the validator
        return self.jwt_secret.get_secret_value().encode()

    def secret_values(self) -> list[str]:
        """Every configured secret, so that log redaction can mask them wherever they appear."""
        values = [
            field.get_secret_value()
            for field in (
                self.jwt_secret,
                self.postgres_password,
                self.redis_password,
                self.resend_api_key,
                self.openai_api_key,
                self.openai_secondary_api_key,
                self.r2_access_key,
                self.r2_secret_key,
            )
            if field is not None
        ]
        return [value for value in values if len(value) >= 6]


def jwt_secret_problem(secret: SecretStr | None) -> str | None:
    """Why a JWT secret is unfit for production, or None when it is fine."""
    if secret is None or not secret.get_secret_value():
        return "is missing"
    value = secret.get_secret_value()
    if value.strip().lower() in PLACEHOLDER_SECRETS:
        return "is a default/example value"
    if len(value.encode()) < MIN_JWT_SECRET_BYTES:
        return f"is shorter than {MIN_JWT_SECRET_BYTES} bytes"
    return None


def rate_limiter_problem(settings: Settings, api_workers: int) -> str | None:
    """Why the rate limiter cannot serve `api_workers` API processes, or None when it can.

    The memory limiter counts in each process: with several, every limit and quota would be
    multiplied by their number. Outside production it stays allowed (a dev run is one process)."""
    if settings.is_production and settings.rate_limit_backend == "memory" and api_workers > 1:
        return (
            f"RATE_LIMIT_BACKEND=memory counts rate limits and quotas in each process; with "
            f"{api_workers} API workers they would be {api_workers} times too generous. "
            "Production needs RATE_LIMIT_BACKEND=redis (or a single worker)"
        )
    return None


def to_async_database_url(url: str) -> str:
    """Accept the URL forms operators paste (postgres://, postgresql://, sqlite:///...)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    return url


def load_settings(**overrides: Any) -> Settings:
    """Build settings, reading Docker secrets only when the secrets directory exists."""
    secrets_dir = os.environ.get("SECRETS_DIR", DEFAULT_SECRETS_DIR)
    if Path(secrets_dir).is_dir():
        overrides.setdefault("_secrets_dir", secrets_dir)
    return Settings(**overrides)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
