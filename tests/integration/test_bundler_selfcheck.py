"""`node bundler/selfcheck.js`: the bundler process (bundler/server.js) end to end on
examples/hello-rn (stale bundles in a reused folder, error positions, `.tsx` syntax errors,
memory over many builds, answers in order, stdin close and SIGTERM)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.previews import METRO_CACHE, bundler_work_dir

ROOT = Path(__file__).parents[2]
BUNDLER = ROOT / "bundler"
# Under the pytest timeout, so that a selfcheck that hangs is killed by us and its output shown.
SELFCHECK_TIMEOUT_S = 300


@pytest.fixture
def _clean_state() -> None:
    """Replaces tests/integration/conftest.py's autouse fixture: the selfcheck uses neither
    Postgres nor Redis."""


@pytest.mark.timeout(SELFCHECK_TIMEOUT_S + 30)
def test_bundler_selfcheck(tmp_path_factory: pytest.TempPathFactory) -> None:
    node = shutil.which("node")
    assert node is not None, "Node.js is not installed (the bundler needs `node`)"
    assert (BUNDLER / "node_modules" / "metro").is_dir(), (
        f"the bundler toolchain is not installed: run `npm ci` in {BUNDLER} (`make test` does)"
    )
    # The selfcheck's default of 50 builds is kept for its memory check: warm, those builds take
    # ~3 s of the ~11 s, and with fewer the comparison of the RSS of the second fifth of the
    # builds with that of the last fifth rests on a handful of samples.
    # The preview tests' transform cache, kept between sessions and warmed by whichever test
    # bundles first: cold, the selfcheck takes ~1.5 min on 2 cores; warm, ~10 s. Its workspace
    # lies at the depth of the workers' (see METRO_CACHE), or none of their entries would hit.
    command = [
        node,
        str(BUNDLER / "selfcheck.js"),
        "--cache-dir",
        str(METRO_CACHE),
        "--tmp-dir",
        str(bundler_work_dir(tmp_path_factory, "selfcheck")),
    ]
    try:
        result = subprocess.run(
            command,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=SELFCHECK_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as timeout:
        output = timeout.output or ""
        if isinstance(output, bytes):
            output = output.decode(errors="replace")
        pytest.fail(f"selfcheck.js still running after {SELFCHECK_TIMEOUT_S} s:\n{output}")
    assert result.returncode == 0, f"selfcheck.js exited {result.returncode}:\n{result.stdout}"
