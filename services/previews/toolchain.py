"""The bundler toolchain's identity: part of every build id, so a toolchain upgrade rebuilds."""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path


@cache
def toolchain_version(bundler_dir: Path) -> str:
    """`react-native@X+metro@Y+lock:<hash>` from bundler/package-lock.json."""
    lock_path = bundler_dir / "package-lock.json"
    lock_bytes = lock_path.read_bytes()
    packages = json.loads(lock_bytes).get("packages", {})

    def version(name: str) -> str:
        return str(packages.get(f"node_modules/{name}", {}).get("version", "?"))

    digest = hashlib.sha256(lock_bytes).hexdigest()[:12]
    return f"react-native@{version('react-native')}+metro@{version('metro')}+lock:{digest}"


def toolchain_versions(bundler_dir: Path) -> dict[str, str]:
    """The versions written into each build's metadata.json."""
    packages = json.loads((bundler_dir / "package-lock.json").read_bytes()).get("packages", {})
    names = ("react", "react-native", "metro", "@react-native/metro-config")
    return {
        name: str(packages.get(f"node_modules/{name}", {}).get("version", "?")) for name in names
    } | {"toolchain": toolchain_version(bundler_dir)}
