"""The deployment files agree with the code (no Docker engine on this machine to run them)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer.core
import typer.main
import yaml

from cli.main import app as hivesync_cli
from cli.worker import QUEUES
from core.config import Settings

ROOT = Path(__file__).parents[2]


SETTINGS = frozenset(name.upper() for name in Settings.model_fields)


def _own_services() -> dict[str, dict[str, Any]]:
    """The services that run our image (built from the Dockerfile)."""
    return {name: service for name, service in _services().items() if "build" in service}


def test_compose_sets_only_real_settings() -> None:
    """Every variable and secret that a service of ours gets is a field of Settings: a typo, or
    a setting renamed in core/config.py, would otherwise be ignored without a word."""
    own = _own_services()
    assert set(own) == {
        "migrate", "api", "worker", "worker-gpu-tasks", "inference", "inference-gpu", "autoscaler",
    }  # fmt: skip
    for name, service in own.items():
        unknown = set(service["environment"]) - SETTINGS
        assert not unknown, f"{name}: {unknown}"
        for secret in service["secrets"]:
            assert secret.upper() in SETTINGS, f"{name}: {secret}"


def test_dockerfile_sets_only_real_settings() -> None:
    """The variables of the final images (beside Python's, pip's and apt's own)."""
    for name, stage in _dockerfile_stages().items():
        for variable in stage.env:
            if not variable.startswith(("PYTHON", "PIP_", "PATH", "DEBIAN_")):
                assert variable in SETTINGS, f"{name}: {variable}"


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


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


@dataclass
class Stage:
    """One stage of the Dockerfile: its base (an image or an earlier stage) and its lines."""

    name: str
    base: str
    lines: list[str] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for line in self.lines:
            if line.startswith("ENV "):
                found.update(re.findall(r"(\w+)=(\S+)", line))
        return found

    def instructions(self, keyword: str) -> list[str]:
        return [line.removeprefix(keyword + " ") for line in self.lines if line.startswith(keyword)]


def _dockerfile_stages() -> dict[str, Stage]:
    """The Dockerfile's stages by name, each line with its continuations joined, comments out."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"FROM (\S+) AS (\S+)", line)
        if match:
            current = stages[match[2]] = Stage(name=match[2], base=match[1])
        elif current is not None:
            current.lines.append(line)
    return stages


def _lineage(stages: dict[str, Stage], name: str) -> list[Stage]:
    """A stage and the stages it is built on, itself first (what ends up in its image, besides
    what it copies from others)."""
    chain = [stages[name]]
    while chain[-1].base in stages:
        chain.append(stages[chain[-1].base])
    return chain


def _arg_default(name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert match, name
    return match[1]


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
    assert published.pop("autoscaler") == ["127.0.0.1:8020:8020"]
    assert published.pop("minio") == ["127.0.0.1:9000:9000", "127.0.0.1:9001:9001"]
    # Postgres, Redis, Temporal, the model server: not at all.
    assert not any(published.values()), published
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


# --- Every role in compose, and the images ------------------------------------------------------

# Services that run once and exit: others wait for them with service_completed_successfully.
ONE_SHOT = {"migrate", "storage-setup"}
# The image's targets per kind of role: the model server has torch, the others must not.
INFERENCE_TARGETS = {"inference", "inference-cpu"}
# What the CPU image must not contain: the `inference` extra.
INFERENCE_EXTRA_MODULES = ("torch", "ray", "transformers", "accelerate", "gguf")


def test_compose_commands_are_real_hivesync_commands() -> None:
    """Each of our services runs a `hivesync` subcommand that parses (options, queue names)."""
    group = typer.main.get_command(hivesync_cli)
    assert isinstance(group, typer.core.TyperGroup)
    commands: dict[str, list[str]] = {}
    for name, service in _own_services().items():
        program, subcommand, *arguments = service["command"]
        assert program == "hivesync", name
        assert subcommand in group.commands, f"{name}: hivesync {subcommand}"
        command = group.commands[subcommand]
        context = command.make_context(subcommand, list(arguments))
        if subcommand == "worker":
            assert context.params["queue"] in QUEUES, name
        commands[name] = service["command"][1:]
    assert commands == {
        "migrate": ["migrate"],
        "api": ["api"],
        "worker": ["worker", "--queue", "cpu_tasks"],
        "worker-gpu-tasks": ["worker", "--queue", "gpu_tasks"],
        "inference": ["inference"],
        "inference-gpu": ["inference"],
        "autoscaler": ["autoscaler"],
    }


def test_compose_builds_targets_of_the_dockerfile() -> None:
    """Our services build a target that the Dockerfile has: the model servers an inference one,
    every other role the CPU image (`app`, the default target), which has no torch."""
    stages = _dockerfile_stages()
    for name, service in _services().items():
        if "build" not in service:
            assert re.fullmatch(r"[\w./-]+:[\w.-]+", service["image"]), name  # pinned tags
            continue
        build = service["build"]
        assert build["context"] == ".", name
        assert build["target"] in stages, f"{name}: {build['target']}"
        is_model_server = service["command"][:2] == ["hivesync", "inference"]
        assert (build["target"] in INFERENCE_TARGETS) == is_model_server, name
        if not is_model_server:
            assert build["target"] == "app", name
    assert list(stages)[-1] == "app"  # what a plain `docker build .` gives


def test_every_long_running_service_has_a_health_check() -> None:
    for name, service in _services().items():
        check = service.get("healthcheck")
        if name in ONE_SHOT:
            # The image's HEALTHCHECK (the API's) would never pass in migrate: switched off.
            assert check is None or check == {"disable": True}, name
            assert check or "build" not in service, name
            continue
        assert check, f"{name} has no health check"
        assert not check.get("disable"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert {"interval", "timeout", "retries"} <= set(check), name


def test_depends_on_waits_for_health_or_completion() -> None:
    """Every dependency names its condition: a service that is healthy (it has a health check)
    or a one-shot that completed; none waits for a service of an optional profile."""
    services = _services()
    for name, service in services.items():
        dependencies = service.get("depends_on", {})
        assert isinstance(dependencies, dict), f"{name}: a list waits for nothing but the start"
        for dependency, rule in dependencies.items():
            target = services[dependency]
            assert "profiles" not in target, f"{name} -> {dependency}"
            if rule["condition"] == "service_healthy":
                assert target.get("healthcheck", {}).get("test"), f"{name} -> {dependency}"
            else:
                assert rule == {"condition": "service_completed_successfully"}, name
                assert dependency in ONE_SHOT, f"{name} -> {dependency}"


def test_the_gpu_tasks_worker_does_not_wait_for_the_model_server() -> None:
    """The model server may take minutes (or be scaled to zero): gpu_tasks work waits in the
    queue meanwhile, so the worker starts without it; it reaches the model by its service
    name, which the gpu profile's server answers to as well."""
    services = _services()
    worker = services["worker-gpu-tasks"]
    assert "inference" not in worker["depends_on"]
    url = urlsplit(worker["environment"]["LOCAL_AI_BASE_URL"])
    assert (url.hostname, url.port, url.path) == ("inference", 8010, "/v1")
    for name in ("inference", "inference-gpu"):
        environment = services[name]["environment"]
        assert environment["INFERENCE_HOST"] == "0.0.0.0", name  # noqa: S104  # in its container
        assert int(environment["INFERENCE_PORT"]) == url.port, name
        assert f":{url.port}/health" in services[name]["healthcheck"]["test"][-1], name
    assert services["inference-gpu"]["networks"]["default"]["aliases"] == ["inference"]


def test_the_default_model_server_is_cpu_and_the_gpu_one_is_a_profile() -> None:
    services = _services()
    cpu, gpu = services["inference"], services["inference-gpu"]
    assert "profiles" not in cpu
    assert "deploy" not in cpu
    assert cpu["build"]["target"] == "inference-cpu"
    assert float(cpu["environment"]["INFERENCE_NUM_GPUS"]) == 0
    assert gpu["profiles"] == ["gpu"]
    assert gpu["build"]["target"] == "inference"
    assert float(gpu["environment"]["INFERENCE_NUM_GPUS"]) == 1
    assert gpu["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    ]
    # No other service asks for a GPU, and only the model servers are in a profile.
    for name, service in services.items():
        if name != "inference-gpu":
            assert "deploy" not in service, name
            assert "profiles" not in service, name
    for name in ("inference", "inference-gpu"):
        # Ray's object store does not fit Docker's default /dev/shm (64 MB).
        assert services[name]["shm_size"] == "1gb", name


def test_the_autoscaler_runs_dry_on_loopback() -> None:
    autoscaler = _services()["autoscaler"]
    environment = {**autoscaler["environment"], "ENVIRONMENT": "test"}
    settings = Settings(
        _env_file=None, **{key.lower(): value for key, value in environment.items()}
    )
    values = settings.model_dump()
    assert values["autoscaler_dry_run"] is True
    port = values["autoscaler_port"]
    assert autoscaler["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert f":{port}/health" in autoscaler["healthcheck"]["test"][-1]
    status = urlsplit(_compose()["x-hivesync-env"]["AUTOSCALER_STATUS_URL"])
    assert (status.hostname, status.port, status.path) == ("autoscaler", port, "/status")


def test_final_images_run_as_a_non_root_user_without_build_tools() -> None:
    stages = _dockerfile_stages()
    for target in ("app", "inference-cpu", "inference"):
        lineage = _lineage(stages, target)
        assert lineage[0].instructions("USER") == ["10001:10001"], target
        lines = " ".join(line for stage in lineage for line in stage.lines)
        # Python packages are installed in the builder stages and copied in as a venv.
        assert "pip install" not in lines, target
        assert not re.search(r"\b(gcc|g\+\+|build-essential|python3\.11-dev|npm)\b", lines), target
        assert "--from=builder" in " ".join(lineage[0].instructions("COPY")), target
    # Node in the CPU image is the binary only (from the bundler stage), not npm.
    assert "--from=bundler /usr/local/bin/node /usr/local/bin/node" in stages["app"].lines[1]


def test_only_the_inference_images_have_the_inference_extra() -> None:
    stages = _dockerfile_stages()
    copies = {target: " ".join(stages[target].instructions("COPY")) for target in stages}
    assert "--from=builder /opt/venv" in copies["app"]
    assert "--from=builder-inference-cpu /opt/venv" in copies["inference-cpu"]
    assert "--from=builder-inference /opt/venv" in copies["inference"]
    for builder in ("builder-inference-cpu", "builder-inference"):
        assert any(".[inference]" in line for line in stages[builder].lines), builder
    assert not any("inference" in line for line in stages["builder"].instructions("RUN"))
    # The torch of the images is the torch of pyproject.toml.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert (
        f"torch=={_arg_default('TORCH_VERSION')}"
        in pyproject["project"]["optional-dependencies"]["inference"]
    )
    # The GPU image is on CUDA and asks Ray for a GPU; the CPU one for none.
    assert "cuda" in _arg_default("CUDA_IMAGE")
    assert _lineage(stages, "inference")[-1].base == "${CUDA_IMAGE}"
    assert stages["inference"].env["INFERENCE_NUM_GPUS"] == "1"
    assert stages["inference-cpu"].env["INFERENCE_NUM_GPUS"] == "0"
    for target in INFERENCE_TARGETS:
        assert stages[target].instructions("CMD") == ['["hivesync", "inference"]'], target
        # KubeRay's default probes of a Ray pod: `bash -c "wget ... | grep success"`.
        installs = " ".join(line for stage in _lineage(stages, target) for line in stage.lines)
        assert re.search(r"apt-get install .*\bwget\b", installs), target


def test_the_cpu_roles_import_nothing_from_the_inference_extra() -> None:
    """The app image has no torch, Ray or transformers: every module that its roles load (the
    API, both workers, the autoscaler, `hivesync health`, migrations' runner) must import
    without them. Only inference/server/ (the model server) may need them."""
    packages = [
        "contracts", "core", "services", "api", "activities", "workflows", "cli",
        "inference.client", "inference.autoscaler", "migrations.runner",
    ]  # fmt: skip
    script = (
        "import importlib, pkgutil, sys\n"
        f"for package in {packages!r}:\n"
        "    module = importlib.import_module(package)\n"
        "    for info in pkgutil.walk_packages(getattr(module, '__path__', []), package + '.'):\n"
        "        if not info.name.endswith('__main__'):\n"
        "            importlib.import_module(info.name)\n"
        f"extra = {set(INFERENCE_EXTRA_MODULES)!r}\n"
        "print(sorted({name.split('.')[0] for name in sys.modules} & extra))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout


def _compose_binary() -> list[str] | None:
    """`docker compose` (v2) when its plugin is installed, else Debian's `docker-compose` (v1,
    1.29), else None."""
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    """The file as Compose itself reads it (schema, anchors, interpolation, profiles, device
    reservations), with the gpu profile on. No Docker engine is needed for `config`."""
    binary = _compose_binary()
    if binary is None:
        pytest.skip("no Compose binary: `apt-get install docker-compose` (Debian) to run this")
    compose_file = ROOT / "docker-compose.yml"
    if binary[-1] != "compose":
        # Compose v1 predates the top-level `name:` (v2 reads it as the project name, which
        # v1 takes from -p): checked without it.
        compose_file = tmp_path / "docker-compose.yml"
        text = (ROOT / "docker-compose.yml").read_text()
        compose_file.write_text(re.sub(r"^name: .*\n", "", text, flags=re.MULTILINE))
    result = subprocess.run(
        [*binary, "-f", str(compose_file), "--project-directory", str(ROOT), "-p", "hivesync",
         "--profile", "gpu", "config", "--services"],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == set(_services())


def test_compose_workers_outlive_their_shutdown_grace() -> None:
    """`docker compose stop` waits longer than a stopping worker lets its activities run."""
    compose = _compose()
    grace_s = Settings(_env_file=None).worker_shutdown_grace_s
    for name in ("worker", "worker-gpu-tasks"):
        period = compose["services"][name]["stop_grace_period"]
        assert period.endswith("s"), period
        assert float(period.removesuffix("s")) > grace_s, name
