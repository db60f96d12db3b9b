"""Which model calls a documentation job makes, and what each one asks.

One `GenerationTask` per thing to write: a SUMMARY per file (unless it has one), a DOCSTRING
per function or class without one, a COMMENT per tricky line, a RENAME per unclear name (see
`analysis` for the heuristics). The models may be as small as SmolLM2-135M on a CPU, so every
prompt asks for plain text in a form that is trivial to read back (a sentence; a name), never
JSON, and `max_tokens` stays small. A task's `context` holds what reading the answer and
placing it need (names, parameters, the line, the indentation...); it travels through
Temporal, so it is plain JSON.
"""

from __future__ import annotations

from contracts.docs import ChatMessage, DocJobType, GenerationTask, Language, TaskKind
from services.docs.analysis import analyze
from services.docs.findings import FileAnalysis, RenameCandidate, Symbol, TrickyLine
from services.docs.languages import check_content, grammar_for
from services.docs.text import SourceText

KINDS: dict[DocJobType, frozenset[TaskKind]] = {
    DocJobType.FUNCTION_DOC: frozenset({TaskKind.DOCSTRING}),
    DocJobType.FILE_SUMMARY: frozenset({TaskKind.SUMMARY}),
    DocJobType.INLINE_COMMENT: frozenset({TaskKind.COMMENT}),
    DocJobType.VARIABLE_RENAME: frozenset({TaskKind.RENAME}),
    DocJobType.FULL_FILE_PASS: frozenset({TaskKind.SUMMARY, TaskKind.DOCSTRING, TaskKind.COMMENT}),
}
MAX_TOKENS = {
    TaskKind.SUMMARY: 96,
    TaskKind.DOCSTRING: 48,
    TaskKind.COMMENT: 48,
    TaskKind.RENAME: 16,
}

# How much code a prompt quotes: a symbol (DOCSTRING, RENAME) and a whole file (SUMMARY).
SYMBOL_LINES, SYMBOL_CHARS = 60, 3000
FILE_CHARS = 4000
COMMENT_CONTEXT_LINES = 3  # lines shown above and below the line to comment

LANGUAGE_NAMES = {"python": "Python", "javascript": "JavaScript", "typescript": "TypeScript"}
SYSTEM = (
    "You are an experienced software engineer who writes short, clear documentation for "
    "source code. Answer in plain English text only: no code, no markdown, no quotes."
)
STRICT_SYSTEM = (
    SYSTEM + " Follow the requested format exactly: no greeting, no introduction, no repeating "
    "the question, no code."
)


def plan_tasks(
    job_type: DocJobType, language: Language, content: str, *, file_path: str
) -> list[GenerationTask]:
    """The model calls a job needs, in file order within each kind.

    Raises ValidationFailed (field `content`) for binary or unparsable content."""
    check_content(content, language, file_path)
    analysis = analyze(language, grammar_for(language, file_path, content), content)
    text = SourceText(content)
    kinds = KINDS[job_type]
    tasks: list[GenerationTask] = []
    if TaskKind.SUMMARY in kinds and analysis.has_code and not analysis.has_file_doc:
        tasks.append(_summary_task(analysis, text, file_path))
    if TaskKind.DOCSTRING in kinds:
        for symbol in analysis.symbols:
            if symbol.docstring is None and symbol.documentable:
                tasks.append(_docstring_task(analysis, symbol, text))
    if TaskKind.COMMENT in kinds:
        tasks.extend(_comment_task(analysis, tricky, text) for tricky in analysis.tricky_lines)
    if TaskKind.RENAME in kinds:
        tasks.extend(_rename_task(analysis, candidate, text) for candidate in analysis.renames)
    return tasks


def stricter(task: GenerationTask) -> GenerationTask:
    """The same task asked more firmly, with an example answer: the retry after an answer
    that could not be used. Same task_id and context, so reading and placing are unchanged."""
    user = next((m.content for m in task.messages if m.role == "user"), "")
    strict_user = f"{user}\n\n{_strict_instruction(task)}"
    return task.model_copy(
        update={
            "messages": [
                ChatMessage(role="system", content=STRICT_SYSTEM),
                ChatMessage(role="user", content=strict_user),
            ]
        }
    )


def _strict_instruction(task: GenerationTask) -> str:
    python = task.context.get("language") == "python"
    if task.kind == TaskKind.DOCSTRING:
        return (
            "Answer with that one sentence only, on a single line, starting with a verb and "
            "ending with a period. Example answer:\nReturns the total price of the items in "
            "the cart."
        )
    if task.kind == TaskKind.COMMENT:
        return (
            "Answer with that one sentence only, on a single line, in at most 15 words. "
            "Example answer:\nSkips the entries that are older than one hour."
        )
    if task.kind == TaskKind.SUMMARY:
        return (
            "Answer with one to three plain sentences only. Example answer:\nLoads the user "
            "settings from disk and checks them. Missing values are taken from the defaults."
        )
    example = "retry_count" if python else "retryCount"
    style = "snake_case" if python else "camelCase"
    return (
        f"Answer with the new name only: a single {style} identifier, optionally followed by "
        f"' - ' and a short reason. Example answer:\n{example} - counts the attempts made so far"
    )


def _task(kind: TaskKind, task_id: str, user: str, context: dict[str, object]) -> GenerationTask:
    return GenerationTask(
        task_id=task_id,
        kind=kind,
        messages=[
            ChatMessage(role="system", content=SYSTEM),
            ChatMessage(role="user", content=user),
        ],
        max_tokens=MAX_TOKENS[kind],
        context=context,
    )


def _summary_task(analysis: FileAnalysis, text: SourceText, file_path: str) -> GenerationTask:
    language = analysis.language
    user = (
        f"Here is the {LANGUAGE_NAMES[language]} file `{file_path}`:\n\n"
        f"```{language}\n{_truncate(text.content, FILE_CHARS)}\n```\n\n"
        "Reply with 1 to 3 sentences saying what this file does."
    )
    context: dict[str, object] = {
        "language": language,
        "line": analysis.file_doc_line,
        "path": file_path,
    }
    return _task(TaskKind.SUMMARY, "summary", user, context)


def _docstring_task(analysis: FileAnalysis, symbol: Symbol, text: SourceText) -> GenerationTask:
    language = analysis.language
    what = {
        "function": f"the function `{symbol.name}` does",
        "method": f"the method `{symbol.qualname}` does",
        "class": f"the class `{symbol.name}` is for",
        "interface": f"the interface `{symbol.name}` describes",
    }[symbol.kind]
    source = _excerpt(text, symbol.start_line, symbol.end_line)
    user = (
        f"Here is a {LANGUAGE_NAMES[language]} {symbol.kind}:\n\n"
        f"```{language}\n{source}\n```\n\n"
        f"Reply with one sentence describing what {what}, starting with a verb."
    )
    if symbol.params:
        names = ", ".join(name.lstrip("*.") for name in symbol.params)
        user += f" Then you may add one line per parameter as `name: description` for: {names}."
    context: dict[str, object] = {
        "language": language,
        "name": symbol.name,
        "qualname": symbol.qualname,
        "symbol_kind": symbol.kind,
        "params": list(symbol.params),
        "param_types": list(symbol.param_types),
        "returns": symbol.returns_value,
        "yields": symbol.yields,
        "return_type": symbol.return_type,
        "line": symbol.doc_line,
        "indent": symbol.doc_indent,
        "style": analysis.style,
    }
    task_id = f"docstring:{symbol.doc_line + 1}:{symbol.qualname}"
    return _task(TaskKind.DOCSTRING, task_id, user, context)


def _comment_task(analysis: FileAnalysis, tricky: TrickyLine, text: SourceText) -> GenerationTask:
    language = analysis.language
    marker = "# <-- this line" if language == "python" else "// <-- this line"
    first = max(0, tricky.line - COMMENT_CONTEXT_LINES)
    last = min(len(text.lines) - 1, tricky.line + COMMENT_CONTEXT_LINES)
    while first < tricky.line and text.is_blank(first):
        first += 1
    while last > tricky.line and text.is_blank(last):
        last -= 1
    shown = [
        text.line_text(line) + (f"  {marker}" if line == tricky.line else "")
        for line in range(first, last + 1)
    ]
    target = text.line_text(tricky.line).strip()
    user = (
        f"Here is part of a {LANGUAGE_NAMES[language]} function:\n\n"
        f"```{language}\n" + "\n".join(shown) + "\n```\n\n"
        f"Reply with one short sentence explaining what the marked line does:\n{target}"
    )
    context: dict[str, object] = {
        "language": language,
        "line": tricky.line,
        "indent": tricky.indent,
        "code": target,
        "reasons": list(tricky.reasons),
    }
    return _task(TaskKind.COMMENT, f"comment:{tricky.line + 1}", user, context)


def _rename_task(
    analysis: FileAnalysis, candidate: RenameCandidate, text: SourceText
) -> GenerationTask:
    language = analysis.language
    style = "snake_case" if language == "python" else "camelCase"
    source = _excerpt(text, candidate.function_start, candidate.function_end)
    user = (
        f"Here is a {LANGUAGE_NAMES[language]} function:\n\n```{language}\n{source}\n```\n\n"
        f"The {candidate.role} `{candidate.name}` has an unclear name. Reply with a better "
        f"{style} name for it only, optionally followed by ' - ' and a short reason."
    )
    context: dict[str, object] = {
        "language": language,
        "old_name": candidate.name,
        "role": candidate.role,
        "function": candidate.function,
        "occurrences": [span.as_list() for span in candidate.occurrences],
        "taken": sorted(candidate.taken),
    }
    first = candidate.occurrences[0]
    task_id = f"rename:{first.line + 1}:{candidate.function}:{candidate.name}"
    return _task(TaskKind.RENAME, task_id, user, context)


def _excerpt(text: SourceText, first: int, last: int) -> str:
    """Lines `first`..`last`, at most SYMBOL_LINES lines and SYMBOL_CHARS characters."""
    lines = [text.line_text(line) for line in range(first, last + 1)]
    if len(lines) > SYMBOL_LINES:
        lines = [*lines[:SYMBOL_LINES], f"... ({len(lines) - SYMBOL_LINES} more lines)"]
    return _truncate("\n".join(lines), SYMBOL_CHARS)


def _truncate(code: str, limit: int) -> str:
    """At most `limit` characters, cut at a line break, saying that it was cut."""
    if len(code) <= limit:
        return code.rstrip("\n")
    cut = code.rfind("\n", 0, limit)
    return code[: cut if cut > 0 else limit] + "\n... (truncated)"
