"""From the model's (read) answers to checked edits: the last step of a documentation job.

`assemble` renders each answer where planning said it goes (the positions travel in each
task's `context`), merges insertions that fall on the same spot (a docstring and a comment
before the same statement: docstring first), checks the result (`validation.check_edits`),
and adds the unified diff, a one-line summary and the rename suggestions. Rename suggestions
are never applied; each is checked on its own: every occurrence still names the old name, and
the file with that rename applied still parses.
"""

from __future__ import annotations

import difflib
from typing import Any

from contracts.docs import DocJobType, GenerationTask, Language, TaskKind
from services.docs.findings import DocStyle
from services.docs.languages import Grammar, grammar_for, syntax_problem
from services.docs.planning import KINDS
from services.docs.reading import RETURNS_KEY
from services.docs.rendering import (
    DocText,
    Param,
    describe,
    js_file_comment,
    jsdoc,
    line_comment,
    python_docstring,
    python_module_docstring,
)
from services.docs.schemas import DocEdits, Edit, Position, Range, RenameSuggestion
from services.docs.text import SourceText
from services.docs.validation import InvalidResult, apply_edits, check_edits

__all__ = ["InvalidResult", "apply_edits", "assemble", "unified_diff"]

DEFAULT_PATHS: dict[str, str] = {
    "python": "file.py",
    "javascript": "file.js",
    "typescript": "file.ts",
}
# Insertions at one position go in this order: a file summary, a docstring, then a comment.
ORDER = {TaskKind.SUMMARY: 0, TaskKind.DOCSTRING: 1, TaskKind.COMMENT: 2}
DEFAULT_RETURNS = "The result."
DEFAULT_YIELDS = "The values produced."


def assemble(
    job_type: DocJobType,
    language: Language,
    content: str,
    tasks: list[GenerationTask],
    answers: dict[str, str],
    *,
    file_path: str | None = None,
    not_planned: int = 0,
) -> DocEdits:
    """The checked edits for a job. `answers` maps task ids to what `read_answer` returned;
    tasks without an answer are skipped (and counted in the summary), and so are the
    `not_planned` items the job's bounds left out (`planning`).

    CPU-bound (it parses the file several times): callers on an event loop run it in a
    thread."""
    grammar = grammar_for(language, file_path, content)
    text = SourceText(content)
    wanted = [task for task in tasks if task.kind in KINDS[job_type]]
    insertions: list[tuple[int, int, str]] = []  # (line, order, text)
    suggestions: list[RenameSuggestion] = []
    renamed: dict[str, set[str]] = {}  # function -> names its earlier suggestions involve
    counts = {kind: 0 for kind in TaskKind}
    skipped = 0
    for task in wanted:
        answer = answers.get(task.task_id)
        if answer is None:
            skipped += 1
            continue
        if task.kind == TaskKind.RENAME:
            suggestion = _suggestion(task, answer)
            names = renamed.setdefault(str(task.context.get("function")), set())
            if suggestion.new in names or suggestion.old in names:
                skipped += 1  # two names in one function would collide
                continue
            names.update((suggestion.old, suggestion.new))
            suggestions.append(suggestion)
        else:
            line = int(task.context["line"])
            insertions.append((line, ORDER[task.kind], _render(task, answer, text, language)))
        counts[task.kind] += 1
    edits = _merge(insertions)
    patched = check_edits(content, edits, grammar)
    for suggestion in suggestions:
        _check_rename(content, suggestion, grammar)
    path = file_path or DEFAULT_PATHS[language]
    return DocEdits(
        edits=edits,
        patched_content=patched,
        diff=unified_diff(content, patched, path),
        summary=_summary(counts, skipped, language, not_planned),
        suggestions=suggestions,
    )


def _merge(insertions: list[tuple[int, int, str]]) -> list[Edit]:
    """One insertion edit per line, in document order."""
    by_line: dict[int, list[tuple[int, str]]] = {}
    for line, order, new_text in insertions:
        by_line.setdefault(line, []).append((order, new_text))
    edits = []
    for line in sorted(by_line):
        joined = "".join(new_text for _, new_text in sorted(by_line[line]))
        position = Position(line=line, column=0)
        edits.append(Edit(start=position, end=position, new_text=joined))
    return edits


# --- rendering each kind ----------------------------------------------------------------------


def _render(task: GenerationTask, answer: str, text: SourceText, language: Language) -> str:
    context = task.context
    python = language == "python"
    newline = text.newline
    if task.kind == TaskKind.COMMENT:
        return line_comment(answer, str(context["indent"]), python, newline)
    if task.kind == TaskKind.SUMMARY:
        line = int(context["line"])
        blank_after = line < len(text.lines) and not text.is_blank(line)
        if python:
            return python_module_docstring(answer, newline, blank_after)
        return js_file_comment(answer, newline, blank_after)
    doc = _doc_text(context, answer)
    indent = str(context["indent"])
    if python:
        style: DocStyle = context.get("style", "google")
        return python_docstring(doc, style, indent, newline)
    return jsdoc(doc, indent, newline)


def _doc_text(context: dict[str, Any], answer: str) -> DocText:
    """The summary, parameter and result descriptions from a DOCSTRING answer (see reading)."""
    summary, *lines = answer.split("\n")
    details = dict(line.split(": ", 1) for line in lines if ": " in line)
    names = [str(name) for name in context.get("params", [])]
    types = list(context.get("param_types") or [None] * len(names))
    params = [
        Param(name, kind, details.get(name.lstrip("*"), describe(name)))
        for name, kind in zip(names, types, strict=False)
    ]
    yields = bool(context.get("yields"))
    returns = None
    if context.get("returns") or yields:
        returns = details.get(RETURNS_KEY, DEFAULT_YIELDS if yields else DEFAULT_RETURNS)
    return DocText(summary, params, returns, context.get("return_type"), yields)


# --- renames ----------------------------------------------------------------------------------


def _suggestion(task: GenerationTask, answer: str) -> RenameSuggestion:
    new, _, reason = answer.partition(" - ")
    occurrences = [
        Range(start=Position(line=line, column=start), end=Position(line=end_line, column=end))
        for line, start, end_line, end in task.context["occurrences"]
    ]
    old = str(task.context["old_name"])
    return RenameSuggestion(old=old, new=new, reason=reason, occurrences=occurrences)


def _check_rename(content: str, suggestion: RenameSuggestion, grammar: Grammar) -> None:
    """Each occurrence names the old name, and the renamed file still parses."""
    text = SourceText(content)
    edits = []
    for occurrence in suggestion.occurrences:
        start = text.offset(occurrence.start.line, occurrence.start.column)
        end = text.offset(occurrence.end.line, occurrence.end.column)
        if content[start:end] != suggestion.old:
            raise InvalidResult(f"a rename occurrence of {suggestion.old!r} is misplaced")
        edits.append(Edit(start=occurrence.start, end=occurrence.end, new_text=suggestion.new))
    renamed = apply_edits(content, edits)
    problem = syntax_problem(renamed, grammar)
    if problem is not None:
        raise InvalidResult(f"renaming {suggestion.old!r} breaks the file: {problem}")


# --- diff and summary -------------------------------------------------------------------------


def unified_diff(content: str, patched: str, path: str) -> str:
    """A unified diff with `a/<path>` and `b/<path>` headers, as `git diff` writes it."""
    lines = difflib.unified_diff(
        _lines(content), _lines(patched), fromfile=f"a/{path}", tofile=f"b/{path}"
    )
    return "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )


def _lines(text: str) -> list[str]:
    """Lines with their endings, split at "\\n" only (str.splitlines also splits at form
    feeds and other separators, which a diff must not)."""
    lines = text.split("\n")
    with_endings = [line + "\n" for line in lines[:-1]]
    return with_endings + ([lines[-1]] if lines[-1] else [])


def _summary(
    counts: dict[TaskKind, int], skipped: int, language: Language, not_planned: int = 0
) -> str:
    """E.g. "Added a file summary, 5 docstrings and 2 comments; 1 rename suggestion"."""
    docstring = "docstring" if language == "python" else "JSDoc comment"
    added = []
    if counts[TaskKind.SUMMARY]:
        added.append("a file summary")
    if counts[TaskKind.DOCSTRING]:
        added.append(_plural(counts[TaskKind.DOCSTRING], docstring))
    if counts[TaskKind.COMMENT]:
        added.append(_plural(counts[TaskKind.COMMENT], "comment"))
    parts = []
    if added:
        joined = ", ".join(added[:-1]) + " and " + added[-1] if len(added) > 1 else added[0]
        parts.append("Added " + joined)
    if counts[TaskKind.RENAME]:
        parts.append(_plural(counts[TaskKind.RENAME], "rename suggestion"))
    summary = "; ".join(parts) if parts else "No changes: nothing needed documenting"
    if skipped:
        summary += f" ({_plural(skipped, 'item')} skipped for want of a usable answer)"
    if not_planned:
        summary += (
            f" ({_plural(not_planned, 'more item')} left out: over the job's limits on model "
            "calls and prompt size; split the file to document the rest)"
        )
    return summary


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
