"""Where preview data lives in object storage, and how a build is named."""

from __future__ import annotations

import hashlib
import json
import uuid

BUNDLE = "bundle.js"
BUNDLE_BROTLI = "bundle.js.br"
METADATA = "metadata.json"
ASSETS = "assets"


def source_key(source_hash: str) -> str:
    return f"sources/{source_hash}.tar.gz"


def build_prefix(build_id: str) -> str:
    return f"previews/{build_id}/"


def build_key(build_id: str, name: str) -> str:
    return build_prefix(build_id) + name


def build_id_for(
    *,
    project_id: uuid.UUID,
    source_hash: str,
    platform: str,
    entry_file: str,
    environment: str,
    toolchain: str,
) -> str:
    """Equal for identical requests (so they share one build), different when anything that
    changes the bundle differs. Scoped to the project: builds are never shared by accident."""
    key = json.dumps(
        {
            "project": str(project_id),
            "sources": source_hash,
            "platform": platform,
            "entry": entry_file,
            "environment": environment,
            "toolchain": toolchain,
        },
        sort_keys=True,
    )
    return hashlib.sha256(key.encode()).hexdigest()[:32]
