"""Whole documentation jobs without a model: plan -> fake answers -> read -> assemble -> check.

Every result must apply to the content sent, parse, and leave the code outside the inserted
comments and docstrings byte-for-byte unchanged."""

from __future__ import annotations

import ast
import json
from itertools import cycle

import pytest
from tree_sitter_language_pack import get_parser

from contracts.docs import DocJobType, GenerationTask, Language, TaskKind
from core.errors import ValidationFailed
from services.docs.assembly import InvalidResult, apply_edits, assemble
from services.docs.planning import plan_tasks, stricter
from services.docs.reading import UnusableOutput, read_answer
from services.docs.schemas import DocEdits, Edit, Position
from services.docs.text import SourceText
from services.docs.validation import check_edits
from tests.unit.docs.samples import JAVASCRIPT, NUMPY_PYTHON, PYTHON, REST_PYTHON, TYPESCRIPT

# What models might answer, tricky ones included: word salad, chatter, quotes that would close
# a docstring, `*/`, backslashes, backticks, code fences.
RAW_ANSWERS = {
    TaskKind.SUMMARY: [
        'Sure! Here is a summary: This module keeps """stock""" in C:\\stock\\. It parses */ it.'
    ],
    TaskKind.DOCSTRING: [
        "ertion handleoun the valu flag",
        "Returns the `value` */ of the item \\",
        "This function loads lines.\nline: the text\nsep: the separator\nReturns: the pairs",
        'Says """hi"""',
        "```\nComputes things.\n```",
    ],
    TaskKind.COMMENT: [
        "Packs the flags into a byte */ here",
        "ertion handleoun the valu flag",
        "Here is a comment: # strips comments\\",
    ],
    TaskKind.RENAME: ["total_count - counts the items", "lineCount", "ertion handleoun the valu"],
}


def answer_all(tasks: list[GenerationTask]) -> dict[str, str]:
    answers = {kind: cycle(texts) for kind, texts in RAW_ANSWERS.items()}
    return {task.task_id: read_answer(task, next(answers[task.kind])) for task in tasks}


def run(
    job_type: DocJobType, language: Language, content: str, path: str
) -> tuple[list[GenerationTask], DocEdits]:
    tasks = plan_tasks(job_type, language, content, file_path=path)
    json.dumps([task.model_dump(mode="json") for task in tasks])  # travels through Temporal
    result = assemble(job_type, language, content, tasks, answer_all(tasks), file_path=path)
    return tasks, result


def assert_sound(content: str, result: DocEdits, grammar: str) -> None:
    """The edits apply, the result parses, and removing what they inserted gives back the
    content (checked here independently of the code under test)."""
    assert apply_edits(content, result.edits) == result.patched_content
    patched = result.patched_content
    if grammar == "python":
        ast.parse(patched)
    else:
        assert not get_parser(grammar).parse(patched.encode()).root_node.has_error  # type: ignore[arg-type]
    text = SourceText(content)
    restored, shift = patched, 0
    for edit in result.edits:
        assert edit.start == edit.end  # insertions only
        offset = text.offset(edit.start.line, edit.start.column) + shift
        assert restored[offset : offset + len(edit.new_text)] == edit.new_text
        restored = restored[:offset] + restored[offset + len(edit.new_text) :]
    assert restored == content


def docstrings(content: str) -> dict[str, str | None]:
    tree = ast.parse(content)
    found: dict[str, str | None] = {"<module>": ast.get_docstring(tree)}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found[node.name] = ast.get_docstring(node)
    return found


# --- every job type ---------------------------------------------------------------------------


@pytest.mark.parametrize("job_type", list(DocJobType))
def test_every_job_type_on_python(job_type: DocJobType) -> None:
    tasks, result = run(job_type, "python", PYTHON, "app/inventory.py")

    assert tasks
    assert_sound(PYTHON, result, "python")
    kinds = {task.kind for task in tasks}
    if job_type == DocJobType.VARIABLE_RENAME:
        assert result.edits == []
        assert result.suggestions
        assert result.patched_content == PYTHON
        assert result.diff == ""
    else:
        assert result.edits
        assert not result.suggestions
        assert result.diff.startswith("--- a/app/inventory.py\n+++ b/app/inventory.py\n")
    if job_type == DocJobType.FULL_FILE_PASS:
        assert kinds == {TaskKind.SUMMARY, TaskKind.DOCSTRING, TaskKind.COMMENT}
        assert result.summary == "Added a file summary, 5 docstrings and 3 comments"


@pytest.mark.parametrize("job_type", list(DocJobType))
def test_every_job_type_on_typescript(job_type: DocJobType) -> None:
    tasks, result = run(job_type, "typescript", TYPESCRIPT, "web/cart.ts")

    assert tasks
    assert_sound(TYPESCRIPT, result, "typescript")
    if job_type == DocJobType.VARIABLE_RENAME:
        assert result.edits == []
        assert len(result.suggestions) == len(tasks)
    else:
        assert result.edits
    assert "*/ here" not in result.patched_content  # a `*/` from a model never ends a comment


@pytest.mark.parametrize("job_type", list(DocJobType))
def test_every_job_type_on_javascript(job_type: DocJobType) -> None:
    tasks, result = run(job_type, "javascript", JAVASCRIPT, "lib/clamp.js")
    assert_sound(JAVASCRIPT, result, "javascript")
    if job_type != DocJobType.INLINE_COMMENT:  # no tricky line in that file
        assert tasks


def test_tsx_file() -> None:
    content = "export const Badge = (p: { n: number }) => <b>{p.n & 0xff ? 1 : 2}</b>;\n"
    _, result = run(DocJobType.FULL_FILE_PASS, "typescript", content, "ui/Badge.tsx")
    assert_sound(content, result, "tsx")
    assert result.patched_content.startswith("/**\n * @file ")


# --- what the edits hold ----------------------------------------------------------------------


def test_python_docstrings_are_where_python_finds_them() -> None:
    _, result = run(DocJobType.FULL_FILE_PASS, "python", PYTHON, "app/inventory.py")
    before, after = docstrings(PYTHON), docstrings(result.patched_content)

    # Existing ones untouched; every other function and the module documented.
    assert after["Item"] == before["Item"]
    assert after["low_stock"] == before["low_stock"]
    assert all(after[name] for name in after)
    summary = after["<module>"]
    # "This module" is dropped, the quotes that would end the docstring too; backslashes kept.
    assert summary == 'Keeps "stock" in C:\\stock\\.\n\nIt parses */ it.'
    # The model's parameter and result lines are used when present...
    assert after["parse_line"] == (
        "Loads lines.\n\n"
        "Args:\n    line: The text.\n    sep: The separator.\n\n"
        "Returns:\n    The pairs."
    )
    # ... and plain descriptions stand in for the others.
    assert after["parse"] == (
        "Returns the `value` */ of the item \\.\n\n"
        "Args:\n    text: The text.\n\n"
        "Returns:\n    The result."
    )
    load = after["load"]
    assert load is not None
    assert "**kwargs: Additional keyword arguments." in load
    gen = after["gen"]
    assert gen is not None
    assert "Yields:\n" in gen


def test_existing_docstrings_are_not_planned_again() -> None:
    tasks = plan_tasks(DocJobType.FUNCTION_DOC, "python", PYTHON, file_path="a.py")
    names = {task.context["qualname"] for task in tasks}
    assert names == {"Item.value", "Item.parse", "parse_line", "load", "gen"}
    js_tasks = plan_tasks(DocJobType.FUNCTION_DOC, "typescript", TYPESCRIPT, file_path="a.ts")
    assert not {"Line", "Cart.total"} & {task.context["qualname"] for task in js_tasks}
    documented = '"""Already summarised."""\nx = 1\n'
    assert plan_tasks(DocJobType.FILE_SUMMARY, "python", documented, file_path="a.py") == []


GOOGLE_PYTHON = REST_PYTHON.replace(
    ":param width: The width.\n    :param height: The height.\n    :returns: The area.",
    "Args:\n        width: The width.\n        height: The height.",
)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (NUMPY_PYTHON, "Scales it.\n\nParameters\n----------\nvalue : float\n    The value."),
        (REST_PYTHON, "Scales it.\n\n:param value: The value.\n:param factor: The factor."),
        (GOOGLE_PYTHON, "Scales it.\n\nArgs:\n    value: The value.\n    factor: The factor."),
    ],
)
def test_docstring_style_of_the_file_is_kept(content: str, expected: str) -> None:
    tasks = plan_tasks(DocJobType.FUNCTION_DOC, "python", content, file_path="geometry.py")
    assert [task.context["name"] for task in tasks] == ["scale"]
    answers = {tasks[0].task_id: read_answer(tasks[0], "Scales it.")}
    result = assemble(DocJobType.FUNCTION_DOC, "python", content, tasks, answers)
    assert_sound(content, result, "python")
    scale = docstrings(result.patched_content)["scale"]
    assert scale is not None
    assert scale.startswith(expected)


def test_numpy_returns_section_uses_the_annotation() -> None:
    tasks = plan_tasks(DocJobType.FUNCTION_DOC, "python", NUMPY_PYTHON, file_path="g.py")
    answers = {tasks[0].task_id: "Scales it."}
    result = assemble(DocJobType.FUNCTION_DOC, "python", NUMPY_PYTHON, tasks, answers)
    scale = docstrings(result.patched_content)["scale"]
    assert scale is not None
    assert scale.endswith("Returns\n-------\nfloat\n    The result.")


def test_jsdoc_lists_parameters_without_types() -> None:
    _, result = run(DocJobType.FUNCTION_DOC, "typescript", TYPESCRIPT, "web/cart.ts")
    patched = result.patched_content
    assert "  /**\n   * Returns the `value` * / of the item \\.\n   *\n" in patched
    assert "   * @param item - The item.\n   * @param qty - The qty.\n   */\n  @logged()" in patched
    assert "@param {" not in patched
    assert "@returns" in patched


def test_docstring_and_comment_on_one_line_become_one_edit() -> None:
    _, result = run(DocJobType.FULL_FILE_PASS, "python", PYTHON, "app/inventory.py")
    at_load = [edit for edit in result.edits if edit.start.line == 40]
    assert len(at_load) == 1
    docstring_end = at_load[0].new_text.index('"""\n', 8)
    assert at_load[0].new_text.index("    # ") > docstring_end  # docstring first


def test_comments_go_above_their_line_at_its_indentation() -> None:
    tasks, result = run(DocJobType.INLINE_COMMENT, "python", PYTHON, "app/inventory.py")
    lines = result.patched_content.split("\n")
    assert "    # Packs the flags into a byte */ here." in lines
    index = lines.index("    # Packs the flags into a byte */ here.")
    assert lines[index + 1] == PYTHON.split("\n")[tasks[0].context["line"]]


def test_tab_indented_python() -> None:
    content = "class A:\n\tdef f(self, v):\n\t\tif v:\n\t\t\treturn [x for x in v if x & 1]\n"
    _, result = run(DocJobType.FULL_FILE_PASS, "python", content, "tabs.py")
    assert_sound(content, result, "python")
    assert '\t\t"""Returns the `value` */ of the item \\\\.\n' in result.patched_content
    assert "\t\t\t# " in result.patched_content


def test_crlf_files_get_crlf_insertions() -> None:
    content = PYTHON.replace("\n", "\r\n")
    _, result = run(DocJobType.FULL_FILE_PASS, "python", content, "app/inventory.py")
    assert_sound(content, result, "python")
    patched = result.patched_content
    assert patched.count("\n") == patched.count("\r\n")


def test_rename_suggestions() -> None:
    _, result = run(DocJobType.VARIABLE_RENAME, "python", PYTHON, "app/inventory.py")
    suggestions = {suggestion.old: suggestion for suggestion in result.suggestions}

    res = suggestions["res"]
    assert res.new == "total_count"
    assert res.reason == "Counts the items."
    assert [(o.start.line, o.start.column, o.end.column) for o in res.occurrences] == [
        (31, 4, 7),
        (35, 12, 15),
        (36, 11, 14),
    ]
    assert suggestions["m"].new == "line_count"
    assert result.summary == "3 rename suggestions"


def test_two_renames_to_one_name_in_a_function_keep_the_first() -> None:
    tasks = plan_tasks(DocJobType.VARIABLE_RENAME, "python", PYTHON, file_path="a.py")
    in_parse_line = [task for task in tasks if task.context["function"] == "parse_line"]
    answers = {task.task_id: "pairs - the pairs" for task in in_parse_line}
    result = assemble(DocJobType.VARIABLE_RENAME, "python", PYTHON, in_parse_line, answers)
    assert [suggestion.old for suggestion in result.suggestions] == ["res"]
    assert result.summary == "1 rename suggestion (1 item skipped for want of a usable answer)"


def test_tasks_without_an_answer_are_skipped() -> None:
    tasks = plan_tasks(DocJobType.FUNCTION_DOC, "python", PYTHON, file_path="a.py")
    answers = {tasks[0].task_id: "Values the stock."}
    result = assemble(DocJobType.FUNCTION_DOC, "python", PYTHON, tasks, answers)
    assert result.summary == "Added 1 docstring (4 items skipped for want of a usable answer)"
    assert assemble(DocJobType.FUNCTION_DOC, "python", PYTHON, [], {}).summary == (
        "No changes: nothing needed documenting"
    )


def test_a_misplaced_rename_occurrence_is_invalid() -> None:
    tasks = plan_tasks(DocJobType.VARIABLE_RENAME, "python", PYTHON, file_path="a.py")
    broken = tasks[0].model_copy(deep=True)
    broken.context["occurrences"][0][1] += 1
    with pytest.raises(InvalidResult, match="misplaced"):
        assemble(DocJobType.VARIABLE_RENAME, "python", PYTHON, [broken], {broken.task_id: "total"})


def test_diff_marks_a_missing_final_newline() -> None:
    content = "def f(x):\n    return x & 0xff"
    tasks = plan_tasks(DocJobType.FUNCTION_DOC, "python", content, file_path="bits.py")
    result = assemble(
        DocJobType.FUNCTION_DOC, "python", content, tasks, {tasks[0].task_id: "Masks x."}
    )
    assert result.diff.startswith("--- a/file.py\n+++ b/file.py\n")
    assert result.diff.endswith("     return x & 0xff\n\\ No newline at end of file\n")


@pytest.mark.parametrize("raw", ['"""', "*/", "\\", 'ends with "', "\x00", '\n\n*/\n"""\n'])
@pytest.mark.parametrize(
    ("language", "content", "grammar"),
    [("python", PYTHON, "python"), ("typescript", TYPESCRIPT, "typescript")],
)
def test_even_unread_answers_cannot_break_the_file(
    raw: str, language: Language, content: str, grammar: str
) -> None:
    """Rendering escapes on its own, in case text reaches it without `read_answer`."""
    job = DocJobType.FULL_FILE_PASS
    tasks = plan_tasks(job, language, content, file_path="f")
    result = assemble(job, language, content, tasks, {task.task_id: raw for task in tasks})
    assert_sound(content, result, grammar)


# --- prompts ----------------------------------------------------------------------------------


def test_prompts_are_short_and_precise() -> None:
    tasks = plan_tasks(DocJobType.FULL_FILE_PASS, "python", PYTHON, file_path="app/inv.py")
    by_kind = {task.kind: task for task in reversed(tasks)}  # the first of each kind

    docstring = by_kind[TaskKind.DOCSTRING]
    assert [m.role for m in docstring.messages] == ["system", "user"]
    assert "def value(self, price: float) -> float:" in docstring.messages[1].content
    assert "starting with a verb" in docstring.messages[1].content
    assert docstring.max_tokens <= 48
    comment = by_kind[TaskKind.COMMENT]
    assert "# <-- this line" in comment.messages[1].content
    summary = by_kind[TaskKind.SUMMARY]
    assert "1 to 3 sentences" in summary.messages[1].content
    assert summary.max_tokens <= 96
    rename = plan_tasks(DocJobType.VARIABLE_RENAME, "typescript", TYPESCRIPT, file_path="a.ts")[0]
    assert "camelCase" in rename.messages[1].content
    assert rename.max_tokens <= 16


def test_stricter_keeps_the_task_and_adds_an_example() -> None:
    for task in plan_tasks(DocJobType.FULL_FILE_PASS, "python", PYTHON, file_path="a.py"):
        strict = stricter(task)
        assert (strict.task_id, strict.kind, strict.context) == (
            task.task_id,
            task.kind,
            task.context,
        )
        assert "Example answer" in strict.messages[-1].content
        assert strict.messages[-1].content.startswith(task.messages[-1].content)
        assert strict.messages[0].content != task.messages[0].content


def test_large_files_quote_a_bounded_prompt() -> None:
    content = "".join(f"def f{n}(a):\n    return a + {n}\n\n\n" for n in range(2000))
    tasks = plan_tasks(DocJobType.FILE_SUMMARY, "python", content, file_path="big.py")
    assert len(tasks[0].messages[1].content) < 5000


def test_planning_refuses_binary_and_broken_content() -> None:
    with pytest.raises(ValidationFailed):
        plan_tasks(DocJobType.FUNCTION_DOC, "python", "x = 1\x00", file_path="a.py")
    with pytest.raises(ValidationFailed):
        plan_tasks(DocJobType.FUNCTION_DOC, "typescript", "function (", file_path="a.ts")


def test_word_salad_answers_are_usable_for_every_kind() -> None:
    salad = "ertion handleoun the valu flag"
    tasks = plan_tasks(DocJobType.FULL_FILE_PASS, "typescript", TYPESCRIPT, file_path="a.ts")
    tasks += plan_tasks(DocJobType.VARIABLE_RENAME, "typescript", TYPESCRIPT, file_path="a.ts")
    for task in tasks:
        assert read_answer(task, salad)
    with pytest.raises(UnusableOutput):
        read_answer(tasks[0], "\x00\x01\x02\x03")


# --- validation -------------------------------------------------------------------------------


def insert(line: int, text: str, column: int = 0) -> Edit:
    position = Position(line=line, column=column)
    return Edit(start=position, end=position, new_text=text)


PY = 'def f(x):\n    s = """\nline\n"""\n    return x\n'
TS = "const f = (x: number) => {\n  const s = `\nline\n`;\n  return x;\n};\n"


@pytest.mark.parametrize(
    ("content", "grammar", "edits", "problem"),
    [
        (PY, "python", [insert(4, "    x = 1\n")], "not a comment"),
        (PY, "python", [insert(1, '    """Open\n')], "does not parse"),
        (PY, "python", [insert(2, "# inside a string\n")], "not a comment"),
        (PY, "python", [insert(4, '    """Not a docstring."""\n')], "not a comment"),
        (PY, "python", [insert(0, "# a\n"), insert(0, "# b\n")], "overlaps"),
        (PY, "python", [insert(3, "# b\n"), insert(1, "# a\n")], "out of order"),
        (PY, "python", [insert(9, "# far\n")], "outside the file"),
        (PY, "python", [insert(0, "# x", column=40)], "outside the file"),
        (
            PY,
            "python",
            [Edit(start=Position(line=0, column=4), end=Position(line=0, column=5), new_text="g")],
            "replaces code",
        ),
        (
            '"""Module."""\nx = 1\n',
            "python",
            [insert(0, '"""Another."""\n')],
            "docstring of the module changed",
        ),
        (TS, "typescript", [insert(4, "  x = 1;\n")], "not a comment"),
        (TS, "typescript", [insert(2, "// inside a template\n")], "not a comment"),
        (TS, "typescript", [insert(0, "/** open\n")], "does not parse"),
    ],
)
def test_broken_edits_are_invalid(
    content: str, grammar: str, edits: list[Edit], problem: str
) -> None:
    with pytest.raises(InvalidResult, match=problem):
        check_edits(content, edits, grammar)  # type: ignore[arg-type]


def test_overlapping_edits_do_not_apply() -> None:
    replace = Edit(start=Position(line=0, column=4), end=Position(line=0, column=8), new_text="g()")
    with pytest.raises(InvalidResult, match="overlaps"):
        apply_edits(PY, [replace, insert(0, "#", column=6)])
    assert apply_edits(PY, [replace, insert(0, "#", column=8)]).startswith("def g()#:\n")


def test_valid_hand_made_edits_pass() -> None:
    edits = [insert(1, '    """Doc."""\n    # note\n'), insert(4, "    # before the return\n")]
    patched = check_edits(PY, edits, "python")
    assert ast.get_docstring(ast.parse(patched).body[0]) == "Doc."  # type: ignore[arg-type]
    assert check_edits(TS, [insert(0, "/** Doc. */\n")], "typescript").startswith("/** Doc. */")
