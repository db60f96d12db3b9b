"""bundler/server/errors.js on errors that Metro raises itself (run by Node, as the bundler
runs it): what reaches the client names no server path and carries no stack."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
WORKSPACE = "/tmp/hivesync-build-x1/workspaces/host-1-0"
LAYOUT = {
    "workspace": WORKSPACE,
    "virtualDir": f"{WORKSPACE}/apps/@app",
    "cacheDir": "/var/lib/hivesync/bundler/cache",
}
APP_DIR = f"{WORKSPACE}/apps/0123abcd"

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js")


def describe(message: str, stack: str, **fields: object) -> dict[str, object]:
    script = f"""
const {{describeError}} = require({json.dumps(str(ROOT / "bundler/server/errors.js"))});
const error = Object.assign(new Error({json.dumps(message)}), {json.dumps(fields)});
error.stack = {json.dumps(stack)};
process.stdout.write(JSON.stringify(describeError(error, {json.dumps(APP_DIR)},
                                                  {json.dumps(LAYOUT)})));
"""
    result = subprocess.run(
        ["node", "-e", script], check=True, capture_output=True, text=True, timeout=60
    )
    described: dict[str, object] = json.loads(result.stdout)
    return described


def test_internal_error_has_no_stack_and_no_server_path() -> None:
    message = f"asset logo.png was not written to {WORKSPACE}/out/0123abcd/assets"
    stack = (
        f"Error: {message}\n"
        f"    at handleBuild ({ROOT}/bundler/server/build.js:101:15)\n"
        "    at async handle (node:internal/process/task_queues:95:5)"
    )

    described = describe(message, stack)

    assert described == {
        "type": "internal",
        "message": "asset logo.png was not written to out/0123abcd/assets",
        "file": None,
        "line": None,
        "column": None,
    }


def test_other_absolute_paths_are_cut_to_their_last_part() -> None:
    message = (
        "Cannot read /home/worker/.config/secret.json nor /tmp/other/x.js\n"
        "    at Object.<anonymous> (/usr/lib/node/y.js:1:1)\n"
        "a / b and /abc/g are not paths"
    )
    described = describe(message, message, type="TransformError", filename=f"{APP_DIR}/a.js")

    assert described["type"] == "transform"
    assert described["file"] == "a.js"
    assert described["message"] == (
        "Cannot read secret.json nor x.js\na / b and /abc/g are not paths"
    )
