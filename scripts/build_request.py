#!/usr/bin/env python3
"""Print the JSON body of `POST /api/v1/preview/build` for a React Native app directory: every
file under it as text, or as {"base64": ...} when it is not UTF-8 text (images, fonts).
Standard library only, so it runs with any python3. Example (see examples/hello-rn/README.md):

    python3 scripts/build_request.py examples/hello-rn --project-id "$PROJECT_ID" \\
        | curl -X POST "$API/api/v1/preview/build?wait=60" ... --data-binary @-
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

# Never sources of the app: installed packages, version control, the docs.
SKIPPED_DIRS = {"node_modules", ".git"}
SKIPPED_SUFFIXES = {".md"}


def app_files(app_dir: Path) -> dict[str, object]:
    files: dict[str, object] = {}
    for path in sorted(app_dir.rglob("*")):
        relative = path.relative_to(app_dir)
        if any(part in SKIPPED_DIRS for part in relative.parts[:-1]):
            continue
        if not path.is_file() or path.is_symlink() or path.suffix.lower() in SKIPPED_SUFFIXES:
            continue
        data = path.read_bytes()
        try:
            files[relative.as_posix()] = data.decode("utf-8")
        except UnicodeDecodeError:
            files[relative.as_posix()] = {"base64": base64.b64encode(data).decode("ascii")}
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("app_dir", type=Path, help="the app's root directory")
    parser.add_argument("--project-id", required=True, help="a project of yours (its id)")
    parser.add_argument("--platform", choices=("ios", "android"), default="ios")
    parser.add_argument("--entry-file", default="index.js", help="relative to APP_DIR")
    parser.add_argument(
        "--environment", choices=("development", "production"), default="production"
    )
    args = parser.parse_args()
    if not (args.app_dir / args.entry_file).is_file():
        parser.error(f"{args.app_dir / args.entry_file} does not exist")
    body = {
        "project_id": args.project_id,
        "target_platform": args.platform,
        "entry_file": args.entry_file,
        "environment": args.environment,
        "files": app_files(args.app_dir),
    }
    json.dump(body, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
