"""The bounds of a documentation job, on generated files shaped to break them: every prompt,
every task and every plan stays within its documented limit, and what does not fit is counted
and reported instead of swelling a Temporal payload."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

from activities.docs import MAX_RETRY_DELAY, _delay, off_loop
from contracts.docs import DocJobType, DocPlan, TaskKind
from core.errors import ValidationFailed
from inference.client.providers import parse_retry_after
from services.docs.assembly import assemble
from services.docs.planning import (
    MAX_PLAN_BYTES,
    MAX_PROMPT_CHARS,
    MAX_TASK_BYTES,
    payload_bytes,
    plan_job,
    prompt_chars,
    stricter,
)
from services.docs.reading import UnusableOutput, read_answer
from tests.fixtures.large_sources import hostile_python
from tests.unit.docs.samples import TYPESCRIPT

TEMPORAL_PAYLOAD_LIMIT = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def hostile() -> str:
    """The shapes of the 0.9 MB file (the integration tests send that one), at 400 KB."""
    return hostile_python(400 * 1024)


def assert_bounded(plan: DocPlan, max_tasks: int) -> None:
    assert len(plan.tasks) <= max_tasks
    for task in plan.tasks:
        assert prompt_chars(task) <= MAX_PROMPT_CHARS, task.task_id
        assert prompt_chars(stricter(task)) <= MAX_PROMPT_CHARS, task.task_id
        assert payload_bytes(task) <= MAX_TASK_BYTES, task.task_id
    encoded = json.dumps(plan.model_dump(mode="json"), separators=(",", ":"))
    assert len(encoded) <= MAX_PLAN_BYTES + 1024
    assert len(encoded) < TEMPORAL_PAYLOAD_LIMIT / 3


def test_a_hostile_file_is_planned_within_every_bound(hostile: str) -> None:
    plan = plan_job(DocJobType.FULL_FILE_PASS, "python", hostile, file_path="big.py")

    assert_bounded(plan, 200)
    kinds = [task.kind for task in plan.tasks]
    assert len(plan.tasks) == 200
    assert plan.not_planned > 500  # one docstring per generated function, far over 200
    # The bounded kinds come first: the 40 KB tricky lines get their (bounded) comments.
    assert kinds.count(TaskKind.COMMENT) >= 4
    assert kinds[0] == TaskKind.SUMMARY
    comment = next(task for task in plan.tasks if task.kind == TaskKind.COMMENT)
    assert "flags & 0x0000" in comment.messages[-1].content
    assert len(str(comment.context["code"])) <= 240
    # The 20 KB name is left out (its context alone is over a task's size), not quoted.
    assert not any("very_long_name_very_long_name_" * 10 in t.task_id for t in plan.tasks)


def test_a_rename_with_thousands_of_occurrences_is_left_out(hostile: str) -> None:
    plan = plan_job(DocJobType.VARIABLE_RENAME, "python", hostile, file_path="big.py")

    assert_bounded(plan, 200)
    assert plan.not_planned >= 1
    assert all(task.context["old_name"] != "tmp" for task in plan.tasks)


def test_the_count_cap_leaves_the_rest_out_and_the_summary_says_so() -> None:
    content = "".join(f"def f{n}(a):\n    return a + {n}\n\n\n" for n in range(30))

    plan = plan_job(DocJobType.FUNCTION_DOC, "python", content, file_path="a.py", max_tasks=5)

    assert [task.task_id for task in plan.tasks] == [
        f"docstring:{2 + 4 * n}:f{n}" for n in range(5)
    ]
    assert plan.not_planned == 25
    answers = {task.task_id: "Adds a number." for task in plan.tasks}
    edits = assemble(
        DocJobType.FUNCTION_DOC,
        "python",
        content,
        plan.tasks,
        answers,
        file_path="a.py",
        not_planned=plan.not_planned,
    )
    assert len(edits.edits) == 5
    assert edits.summary.startswith("Added 5 docstrings (25 more items left out: over the job's")


def test_a_plan_from_before_the_bounds_still_reads() -> None:
    """Workflows started before plans counted what they left out hold a bare list."""
    plan = plan_job(DocJobType.FUNCTION_DOC, "typescript", TYPESCRIPT, file_path="a.ts")
    old = [task.model_dump(mode="json") for task in plan.tasks]
    assert DocPlan.model_validate(old) == DocPlan(tasks=plan.tasks, not_planned=0)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("3", 3.0), ("inf", None), ("nan", None), ("1e400", None), ("-5", 0.0), ("soon", None)],
)
def test_retry_after_is_read_as_finite_seconds(header: str, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


def test_retry_after_becomes_a_bounded_retry_delay() -> None:
    assert _delay(None) is None
    assert _delay(4.0) == timedelta(seconds=4)
    assert _delay(86_400.0) == MAX_RETRY_DELAY


def test_a_typescript_rename_to_using_is_unusable() -> None:
    """`using` declares a resource in TypeScript: renaming a variable to it breaks the file
    (the assembly gate refused it as INVALID_RESULT before the reader knew the word)."""
    plan = plan_job(DocJobType.VARIABLE_RENAME, "typescript", TYPESCRIPT, file_path="a.ts")
    with pytest.raises(UnusableOutput):
        read_answer(plan.tasks[0], "using")


def test_planning_runs_in_a_process_of_its_own() -> None:
    """`off_loop` gives the same plan as planning in place, and its errors as they are."""
    plan = asyncio.run(
        off_loop(plan_job, DocJobType.FUNCTION_DOC, "typescript", TYPESCRIPT, file_path="a.ts")
    )
    assert plan == plan_job(DocJobType.FUNCTION_DOC, "typescript", TYPESCRIPT, file_path="a.ts")
    with pytest.raises(ValidationFailed, match="does not parse as Python"):
        asyncio.run(off_loop(plan_job, DocJobType.FUNCTION_DOC, "python", "def (", file_path="a"))
