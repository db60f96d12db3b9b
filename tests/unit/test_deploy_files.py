"""The deployment files agree with the code (no Docker engine on this machine to run them)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml

from core.config import Settings

ROOT = Path(__file__).parents[2]


def test_compose_sets_only_real_settings() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    fields = {name.upper() for name in Settings.model_fields}
    for name in ("migrate", "api", "worker"):
        environment = compose["services"][name]["environment"]
        unknown = set(environment) - fields
        assert not unknown, f"{name}: {unknown}"
        for secret in compose["services"][name]["secrets"]:
            assert secret.upper() in fields, f"{name}: {secret}"


def test_dockerfile_copies_every_installed_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {
        pattern.rstrip("*")
        for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    copied = set(re.findall(r"^COPY (\w+) \./\1$", (ROOT / "Dockerfile").read_text(), re.MULTILINE))
    assert packages <= copied, packages - copied


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return compose


def _interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's own interpolation of one value: ${NAME:-default} and $$ (a literal $)."""

    def variable(match: re.Match[str]) -> str:
        return (env or {}).get(match[1]) or match[2]

    return re.sub(r"\$\{(\w+):-([^}]*)\}", variable, value).replace("$$", "$")


def test_compose_trusts_no_forwarded_header_by_default() -> None:
    """The API's port is published: with "*" any client would pick the address that the rate
    limiter sees. By default only the container itself (nobody) is trusted; a reverse proxy's
    address is set through FORWARDED_ALLOW_IPS."""
    compose = _compose()
    assert "8000:8000" in compose["services"]["api"]["ports"]
    for name in ("api", "worker", "migrate"):
        value = compose["services"][name]["environment"]["FORWARDED_ALLOW_IPS"]
        assert _interpolate(value) == "127.0.0.1", name
        assert _interpolate(value, {"FORWARDED_ALLOW_IPS": "172.30.0.5"}) == "172.30.0.5"


def test_compose_publishes_only_the_api_beyond_loopback() -> None:
    """MinIO (S3 API and console) and the Temporal UI (workflow inputs hold users' code; it can
    terminate workflows) listen on the host's loopback; nothing else is published."""
    services = _compose()["services"]
    published = {name: service.get("ports", []) for name, service in services.items()}
    assert published.pop("api") == ["8000:8000"]
    assert published.pop("temporal-ui") == ["127.0.0.1:8080:8080"]
    assert published.pop("minio") == ["127.0.0.1:9000:9000", "127.0.0.1:9001:9001"]
    assert not any(published.values()), published  # Postgres, Redis, Temporal: not at all
    assert "--console-address :9001" in services["minio"]["command"][0]


def test_compose_app_keys_are_not_the_storage_root() -> None:
    """The API and the worker hold the application user's keys, never MinIO's root password."""
    compose = _compose()
    services = compose["services"]
    minio = services["minio"]
    root_user = minio["environment"]["MINIO_ROOT_USER"]
    assert "MINIO_ROOT_PASSWORD" not in minio["environment"]  # a secret file, not in the YAML
    assert minio["secrets"] == ["minio_root_password"]
    for name in ("api", "worker"):
        environment = services[name]["environment"]
        assert environment["R2_ACCESS_KEY"] == "hivesync-app" != root_user
        assert "R2_SECRET_KEY" not in environment  # the Docker secret r2_secret_key
        assert services[name]["secrets"] == ["jwt_secret", "r2_secret_key"]
    assert services["migrate"]["secrets"] == ["jwt_secret"]
    for name, service in services.items():
        if name not in ("minio", "storage-setup"):
            assert "minio_root_password" not in service.get("secrets", []), name
    assert (
        compose["secrets"]["r2_secret_key"]["file"]
        != compose["secrets"]["minio_root_password"]["file"]
    )
    for dependent in ("api", "worker"):
        assert services[dependent]["depends_on"]["storage-setup"] == {
            "condition": "service_completed_successfully"
        }


def test_app_policy_reaches_only_its_bucket() -> None:
    bucket = _compose()["x-hivesync-env"]["R2_BUCKET"]
    policy = json.loads((ROOT / "deploy" / "minio-app-policy.json").read_text())
    actions: set[str] = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        assert set(statement["Resource"]) <= {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}
        actions.update(statement["Action"])
    assert not any("*" in action or action.startswith("admin:") for action in actions)
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"} <= actions
    assert not actions & {"s3:CreateBucket", "s3:DeleteBucket", "s3:PutBucketPolicy"}


def _run_with_stubs(tmp_path: Path, script: str, stubs: list[str]) -> list[list[str]]:
    """Runs a container's `sh -ec` command with its /run/secrets in tmp_path and each of
    `stubs` a program that records its arguments (and MINIO_ROOT_PASSWORD): what the command
    hands each program, checked without a Docker engine."""
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir(exist_ok=True)
    (secrets_dir / "minio_root_password").write_text("root-password-from-file\n")
    (secrets_dir / "r2_secret_key").write_text("app-secret-from-file\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "calls.jsonl"
    for name in stubs:
        stub = bin_dir / name
        stub.write_text(
            f"#!{sys.executable}\n"
            "import json, os, sys\n"
            f"with open({str(calls)!r}, 'a') as out:\n"
            "    out.write(json.dumps([os.path.basename(sys.argv[0]), *sys.argv[1:],\n"
            "                          os.environ.get('MINIO_ROOT_PASSWORD', '')]) + '\\n')\n"
        )
        stub.chmod(0o755)
    command = _interpolate(script).replace("/run/secrets", str(secrets_dir))
    subprocess.run(
        ["/bin/sh", "-ec", command],
        check=True,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
    )
    return [json.loads(line) for line in calls.read_text().splitlines()]


def test_minio_gets_its_root_password_from_the_secret(tmp_path: Path) -> None:
    minio = _compose()["services"]["minio"]
    assert minio["entrypoint"] == ["/bin/sh", "-ec"]
    calls = _run_with_stubs(tmp_path, minio["command"][0], ["minio"])
    assert calls == [
        ["minio", "server", "/data", "--console-address", ":9001", "root-password-from-file"]
    ]


def test_storage_setup_creates_the_app_user_with_the_bucket_policy(tmp_path: Path) -> None:
    setup = _compose()["services"]["storage-setup"]
    assert setup["volumes"] == [
        "./deploy/minio-app-policy.json:/etc/hivesync/minio-app-policy.json:ro"
    ]
    calls = [call[:-1] for call in _run_with_stubs(tmp_path, setup["command"][0], ["mc"])]
    root = "root-password-from-file"
    assert calls == [
        ["mc", "alias", "set", "root", "http://minio:9000", "hivesync-root", root],
        ["mc", "mb", "--ignore-existing", "root/hivesync-previews"],
        ["mc", "admin", "policy", "create", "root", "hivesync-app",
         "/etc/hivesync/minio-app-policy.json"],
        ["mc", "admin", "user", "add", "root", "hivesync-app", "app-secret-from-file"],
        ["mc", "admin", "policy", "detach", "root", "hivesync-app", "--user", "hivesync-app"],
        ["mc", "admin", "policy", "attach", "root", "hivesync-app", "--user", "hivesync-app"],
    ]  # fmt: skip
