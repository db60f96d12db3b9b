"""Which model calls a documentation job makes, and what each one asks.

One `GenerationTask` per thing to write: a SUMMARY per file (unless it has one), a DOCSTRING
per function or class without one, a COMMENT per tricky line, a RENAME per unclear name (see
`analysis` for the heuristics). The models may be as small as SmolLM2-135M on a CPU, so every
prompt asks for plain text in a form that is trivial to read back (a sentence; a name), never
JSON, and `max_tokens` stays small. A task's `context` holds what reading the answer and
placing it need (names, parameters, the line, the indentation...); it travels through
Temporal, so it is plain JSON.

Every job is bounded, whatever the file holds (jobs take files up to 1 MB):

* a prompt: all the messages of a task, its stricter retry included, are at most
  MAX_PROMPT_CHARS characters. Quoted code is cut to a few lines around the symbol or line
  (SYMBOL_LINES, COMMENT_CONTEXT_LINES), each quoted line to MAX_LINE_CHARS, names to
  MAX_NAME_CHARS, and the code to what the rest of the prompt leaves;
* a task as Temporal carries it (prompt and context, as JSON) is at most MAX_TASK_BYTES: a
  task whose context is larger (a variable named thousands of times, a name of kilobytes, a
  function of hundreds of parameters) is left out;
* a plan keeps at most `max_tasks` tasks (the setting DOCS_MAX_MODEL_CALLS) and MAX_PLAN_BYTES
  in all, far under Temporal's 2 MB payload limit. Tasks are kept in this order of priority:
  the file summary, the comments and renames (at most 8 of each: see `findings`), then the
  docstrings in file order. What does not fit is left out and counted (`DocPlan.not_planned`);
  the job then documents what it could and its summary says how many items were left out.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial

from contracts.docs import ChatMessage, DocJobType, DocPlan, GenerationTask, Language, TaskKind
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
MAX_LINE_CHARS = 240  # of one quoted line
MAX_NAME_CHARS = 80  # of a name or path quoted in a prompt
MAX_PARAMS_LISTED = 24  # parameters a DOCSTRING prompt names

# The bounds of a job (see the module's docstring).
MAX_PROMPT_CHARS = 6000
MAX_TASK_BYTES = 32 * 1024
MAX_PLAN_BYTES = 512 * 1024
DEFAULT_MAX_TASKS = 200
# Which candidates a plan keeps first, and the order of the tasks it returns.
PRIORITY = (TaskKind.SUMMARY, TaskKind.COMMENT, TaskKind.RENAME, TaskKind.DOCSTRING)
ORDER = (TaskKind.SUMMARY, TaskKind.DOCSTRING, TaskKind.COMMENT, TaskKind.RENAME)

LANGUAGE_NAMES = {"python": "Python", "javascript": "JavaScript", "typescript": "TypeScript"}
SYSTEM = (
    "You are an experienced software engineer who writes short, clear documentation for "
    "source code. Answer in plain English text only: no code, no markdown, no quotes."
)
STRICT_SYSTEM = (
    SYSTEM + " Follow the requested format exactly: no greeting, no introduction, no repeating "
    "the question, no code."
)


def plan_job(
    job_type: DocJobType,
    language: Language,
    content: str,
    *,
    file_path: str,
    max_tasks: int = DEFAULT_MAX_TASKS,
) -> DocPlan:
    """The model calls a job makes, within the job's bounds (see the module's docstring), in
    file order within each kind; and how many were left out.

    CPU-bound (a 1 MB file takes seconds): callers on an event loop run it in a thread.
    Raises ValidationFailed (field `content`) for binary or unparsable content."""
    check_content(content, language, file_path)
    analysis = analyze(language, grammar_for(language, file_path, content), content)
    text = SourceText(content)
    kinds = KINDS[job_type]
    candidates: dict[TaskKind, list[Callable[[], GenerationTask]]] = {kind: [] for kind in ORDER}
    if TaskKind.SUMMARY in kinds and analysis.has_code and not analysis.has_file_doc:
        candidates[TaskKind.SUMMARY].append(partial(_summary_task, analysis, text, file_path))
    if TaskKind.DOCSTRING in kinds:
        candidates[TaskKind.DOCSTRING] = [
            partial(_docstring_task, analysis, symbol, text)
            for symbol in analysis.symbols
            if symbol.docstring is None and symbol.documentable
        ]
    if TaskKind.COMMENT in kinds:
        candidates[TaskKind.COMMENT] = [
            partial(_comment_task, analysis, tricky, text) for tricky in analysis.tricky_lines
        ]
    if TaskKind.RENAME in kinds:
        candidates[TaskKind.RENAME] = [
            partial(_rename_task, analysis, candidate, text) for candidate in analysis.renames
        ]
    kept: dict[TaskKind, list[GenerationTask]] = {kind: [] for kind in ORDER}
    count, size = 0, 0
    for kind in PRIORITY:
        for build in candidates[kind]:
            if count >= max_tasks:
                break
            task = build()
            task_bytes = payload_bytes(task)
            if task_bytes > MAX_TASK_BYTES or size + task_bytes > MAX_PLAN_BYTES:
                continue
            kept[kind].append(task)
            count, size = count + 1, size + task_bytes
    total = sum(len(builds) for builds in candidates.values())
    return DocPlan(tasks=[task for kind in ORDER for task in kept[kind]], not_planned=total - count)


def plan_tasks(
    job_type: DocJobType, language: Language, content: str, *, file_path: str
) -> list[GenerationTask]:
    """The tasks of `plan_job` with the default bounds."""
    return plan_job(job_type, language, content, file_path=file_path).tasks


def payload_bytes(task: GenerationTask) -> int:
    """The size of a task in a Temporal payload: JSON with non-ASCII characters escaped, its
    largest encoding."""
    return len(json.dumps(task.model_dump(mode="json"), separators=(",", ":")))


def prompt_chars(task: GenerationTask) -> int:
    """The characters of all of a task's messages (what MAX_PROMPT_CHARS bounds)."""
    return sum(len(message.content) for message in task.messages)


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
    user = _user(
        f"Here is the {LANGUAGE_NAMES[language]} file `{_clip(file_path)}`:",
        language,
        _quote(text, 0, len(text.lines) - 1, max_lines=len(text.lines), max_chars=FILE_CHARS),
        "Reply with 1 to 3 sentences saying what this file does.",
    )
    context: dict[str, object] = {
        "language": language,
        "line": analysis.file_doc_line,
        "path": file_path,
    }
    return _task(TaskKind.SUMMARY, "summary", user, context)


def _docstring_task(analysis: FileAnalysis, symbol: Symbol, text: SourceText) -> GenerationTask:
    language = analysis.language
    name, qualname = _clip(symbol.name), _clip(symbol.qualname)
    what = {
        "function": f"the function `{name}` does",
        "method": f"the method `{qualname}` does",
        "class": f"the class `{name}` is for",
        "interface": f"the interface `{name}` describes",
    }[symbol.kind]
    question = f"Reply with one sentence describing what {what}, starting with a verb."
    if symbol.params:
        listed = [_clip(name.lstrip("*.")) for name in symbol.params[:MAX_PARAMS_LISTED]]
        more = len(symbol.params) - len(listed)
        names = ", ".join(listed) + (f" (and {more} more)" if more > 0 else "")
        question += f" Then you may add one line per parameter as `name: description` for: {names}."
    user = _user(
        f"Here is a {LANGUAGE_NAMES[language]} {symbol.kind}:",
        language,
        _quote(text, symbol.start_line, symbol.end_line),
        question,
    )
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
        _clip(text.line_text(line), MAX_LINE_CHARS) + (f"  {marker}" if line == tricky.line else "")
        for line in range(first, last + 1)
    ]
    target = _clip(text.line_text(tricky.line).strip(), MAX_LINE_CHARS)
    user = _user(
        f"Here is part of a {LANGUAGE_NAMES[language]} function:",
        language,
        "\n".join(shown),
        f"Reply with one short sentence explaining what the marked line does:\n{target}",
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
    user = _user(
        f"Here is a {LANGUAGE_NAMES[language]} function:",
        language,
        _quote(text, candidate.function_start, candidate.function_end),
        f"The {candidate.role} `{_clip(candidate.name)}` has an unclear name. Reply with a "
        f"better {style} name for it only, optionally followed by ' - ' and a short reason.",
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


def _quote(
    text: SourceText,
    first: int,
    last: int,
    *,
    max_lines: int = SYMBOL_LINES,
    max_chars: int = SYMBOL_CHARS,
) -> str:
    """Lines `first`..`last`: at most `max_lines` lines of at most MAX_LINE_CHARS characters,
    and `max_chars` characters in all, saying what was cut. Reads no more lines than it
    quotes (a whole 1 MB file is never copied)."""
    lines: list[str] = []
    used = 0
    for line in range(first, min(last, first + max_lines - 1) + 1):
        quoted = _clip(text.line_text(line), MAX_LINE_CHARS)
        if used + len(quoted) + 1 > max_chars:
            lines.append("... (truncated)")
            return "\n".join(lines)
        lines.append(quoted)
        used += len(quoted) + 1
    if last - first + 1 > max_lines:
        lines.append(f"... ({last - first + 1 - max_lines} more lines)")
    return "\n".join(lines).rstrip("\n")


def _user(header: str, language: str, code: str, question: str) -> str:
    """A user message: the header, the code fenced, the question. The code is cut to what the
    rest leaves of USER_CHARS, so that every prompt fits MAX_PROMPT_CHARS."""
    fixed = f"{header}\n\n```{language}\n\n```\n\n{question}"
    room = USER_CHARS - len(fixed)
    if len(code) > room:
        code = _truncate(code, max(0, room - len("\n... (truncated)")))
    return f"{header}\n\n```{language}\n{code}\n```\n\n{question}"


def _clip(value: str, limit: int = MAX_NAME_CHARS) -> str:
    """At most `limit` characters, ending with an ellipsis when cut."""
    return value if len(value) <= limit else value[: limit - 1] + "\u2026"


def _truncate(code: str, limit: int) -> str:
    """At most `limit` characters (plus the note), cut at a line break, saying that it was
    cut."""
    if len(code) <= limit:
        return code.rstrip("\n")
    cut = code.rfind("\n", 0, limit)
    return code[: cut if cut > 0 else limit] + "\n... (truncated)"


# What a user message may take: the stricter retry adds its system prompt's difference and
# its longest instruction.
_LONGEST_STRICT = max(
    len(_strict_instruction(_task(kind, "", "", {"language": language})))
    for kind in TaskKind
    for language in ("python", "javascript")
)
USER_CHARS = MAX_PROMPT_CHARS - len(STRICT_SYSTEM) - len("\n\n") - _LONGEST_STRICT
