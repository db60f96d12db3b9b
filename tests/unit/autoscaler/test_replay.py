"""Replaying traces: the chaining of `current`, malformed lines, and `hivesync autoscaler replay`
giving the same lines as the function."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app as cli
from core.config import Settings
from inference.autoscaler.policy import PolicyConfig
from inference.autoscaler.replay import TraceError, replay
from tests.unit.autoscaler.test_policy import CONFIG, TRACES

BURST = TRACES / "burst.jsonl"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The CLI reads its defaults from the settings: none from the shell or a .env file."""
    for name in Settings.model_fields:
        if name.startswith("autoscaler_"):
            monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.delenv("ENVIRONMENT", raising=False)
    monkeypatch.chdir(tmp_path)


def run_cli(*args: str, stdin: str | None = None) -> tuple[int, list[str], str]:
    result = CliRunner().invoke(cli, ["autoscaler", "replay", *args], input=stdin)
    return result.exit_code, result.stdout.splitlines(), result.stderr


@pytest.mark.parametrize("trace", sorted(TRACES.glob("*.jsonl")), ids=lambda path: path.stem)
@pytest.mark.parametrize("current", [None, 3])
def test_current_is_the_previous_desired(trace: Path, current: int | None) -> None:
    decisions = list(replay(trace.read_text().splitlines(), CONFIG, current=current))
    assert decisions[0]["current"] == (CONFIG.min_replicas if current is None else current)
    for before, after in itertools.pairwise(decisions):
        assert after["current"] == before["desired"]
    assert [d["t"] for d in decisions] == [
        json.loads(line)["t"] for line in trace.read_text().splitlines()
    ]


def test_cli_prints_the_same_lines_as_the_function() -> None:
    expected = [json.dumps(d) for d in replay(BURST.read_text().splitlines(), CONFIG)]
    code, lines, stderr = run_cli(str(BURST))
    assert (code, stderr) == (0, "")
    assert lines == expected
    assert json.loads(lines[6]) == {
        "t": 90,
        "current": 0,
        "desired": 2,
        "reason": "work waits with no replica: backlog 500: up 0 -> 2 (step 2; 4 wanted)",
        "rule": "from-zero",
    }
    # From stdin, the same.
    code, from_stdin, _ = run_cli("-", stdin=BURST.read_text())
    assert (code, from_stdin) == (0, expected)


def test_cli_options_override_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOSCALER_MAX_REPLICAS", "8")
    monkeypatch.setenv("AUTOSCALER_COOLDOWN_S", "30")
    config = replace(
        CONFIG,
        min_replicas=1,
        max_replicas=6,
        target_backlog_per_replica=50,
        scale_up_step=1,
        urgent_backlog_age_s=120,
        hysteresis=0.1,
        idle_s=300,
        gpu_busy_utilization=0.95,
        gpu_idle_utilization=0.1,
        cooldown_s=30,  # from the environment
    )
    lines = BURST.read_text().splitlines()
    expected = [json.dumps(d) for d in replay(lines, config, current=2)]
    options = "--min 1 --max 6 --target-backlog 50 --step 1 --urgent-age 120 --hysteresis 0.1"
    options += " --idle 300 --gpu-busy 0.95 --gpu-idle 0.1 --initial 2"
    code, output, stderr = run_cli(*options.split(), str(BURST))
    assert (code, stderr) == (0, "")
    assert output == expected
    assert json.loads(output[0])["current"] == 2
    assert max(json.loads(line)["desired"] for line in output) == 6


def test_cli_refuses_settings_that_do_not_fit() -> None:
    code, output, stderr = run_cli("--min", "5", str(BURST))
    assert (code, output) == (2, [])
    assert "min replicas 5 must be 0..max" in stderr


def test_cli_reports_a_missing_trace() -> None:
    code, _, stderr = run_cli("nowhere.jsonl")
    assert code == 2
    assert "cannot read nowhere.jsonl: No such file or directory" in stderr


GOOD = '{"t": 0, "backlog": 0, "backlog_age_s": 0, "pollers": 0, "gpu_utilization": null}'


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 2: not JSON (Expecting property name enclosed in double quotes at"),
        ("[1, 2]", "line 2: expected a JSON object, got list"),
        ('{"t": 15, "backlog": 1}', "line 2: missing backlog_age_s, pollers"),
        (
            '{"t": 15, "backlog": 1.5, "backlog_age_s": 0, "pollers": 0}',
            "line 2: backlog must be an integer, got 1.5",
        ),
        (
            '{"t": 15, "backlog": true, "backlog_age_s": 0, "pollers": 0}',
            "line 2: backlog must be an integer, got True",
        ),
        (
            '{"t": "15", "backlog": 1, "backlog_age_s": 0, "pollers": 0}',
            "line 2: t must be a number, got '15'",
        ),
        (
            '{"t": 15, "backlog": -1, "backlog_age_s": 0, "pollers": 0}',
            "line 2: backlog cannot be negative, got -1",
        ),
        (
            '{"t": 15, "backlog": 1, "backlog_age_s": 0, "pollers": 0, "gpu_utilization": 92}',
            "line 2: gpu_utilization must be 0..1 or null, got 92",
        ),
        (
            '{"t": -5, "backlog": 1, "backlog_age_s": 0, "pollers": 0}',
            "line 2: t cannot be negative, got -5",
        ),
    ],
)
def test_malformed_lines_are_named(line: str, message: str) -> None:
    with pytest.raises(TraceError) as raised:
        list(replay([GOOD, line], CONFIG))
    assert str(raised.value).startswith(message)


def test_time_must_not_go_back() -> None:
    later = GOOD.replace('"t": 0', '"t": 30')
    with pytest.raises(TraceError, match=r"^line 4: time went back: 0 after 30$"):
        list(replay([GOOD, "", later, GOOD], CONFIG))


def test_blank_lines_and_a_missing_gpu_are_accepted() -> None:
    reading = '{"t": 15, "backlog": 20, "backlog_age_s": 4, "pollers": 0}'
    decisions = list(replay([GOOD, "  ", reading], CONFIG))
    assert [(d["t"], d["current"], d["desired"]) for d in decisions] == [(0, 0, 0), (15, 0, 2)]


def test_cli_prints_the_lines_before_a_malformed_one(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    trace.write_text(GOOD + "\n" + GOOD.replace("null", "2") + "\n")
    code, output, stderr = run_cli(str(trace))
    assert code == 2
    assert [json.loads(line)["t"] for line in output] == [0]
    assert f"{trace}: line 2: gpu_utilization must be 0..1 or null, got 2" in stderr


def test_settings_give_the_tests_config() -> None:
    assert PolicyConfig.from_settings(Settings()) == CONFIG
    example = (Path(__file__).parents[3] / ".env.example").read_text()
    for field in vars(CONFIG):
        assert f"AUTOSCALER_{field.upper()}=" in example, field
