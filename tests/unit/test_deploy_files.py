"""The deployment files agree with the code (no Docker engine on this machine to run them)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

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
        assert compose["services"][name]["secrets"] == ["jwt_secret"]


def test_dockerfile_copies_every_installed_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {
        pattern.rstrip("*")
        for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    copied = set(re.findall(r"^COPY (\w+) \./\1$", (ROOT / "Dockerfile").read_text(), re.MULTILINE))
    assert packages <= copied, packages - copied
