"""Turning a model's answer into text that is safe to put into a file.

Reading is lenient: small models greet ("Sure! Here is..."), wrap answers in code fences or
quotes, start with "This function...", or ramble past the first sentence; all of that is
stripped, and the first sentence(s) kept. Even word salad from a random-weight test model
("ertion handleoun the valu flag") is printable text and becomes usable text. What cannot be
used raises `UnusableOutput`: an empty answer, only punctuation, binary garbage, code where a
sentence was asked for, and (for renames) anything that does not give a fresh, valid name.

Whatever is returned can never break the file it goes into: it holds no line breaks except
between the parts of a docstring answer, no `\"\"\"` and no trailing backslash (Python
docstrings), no `*/` (JSDoc and block comments).

What each kind returns:

* SUMMARY: 1-3 sentences. COMMENT: one sentence on one line.
* DOCSTRING: the summary sentence on the first line, then optional lines `name: description`
  for parameters the model described and `@returns: description`.
* RENAME: `new_name - reason` (the name is an identifier, so the first " - " splits them).
"""

from __future__ import annotations

import builtins
import keyword
import re
import textwrap
import unicodedata
from typing import Any

from contracts.docs import GenerationTask, TaskKind
from services.docs.findings import is_unclear_name
from services.docs.languages import parse_tree, syntax_problem

MAX_CHARS = {TaskKind.SUMMARY: 400, TaskKind.DOCSTRING: 200, TaskKind.COMMENT: 120}
MAX_SENTENCES = {TaskKind.SUMMARY: 3, TaskKind.DOCSTRING: 1, TaskKind.COMMENT: 1}
RETURNS_KEY = "@returns"


class UnusableOutput(Exception):
    """The model's answer cannot be used for its task; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_answer(task: GenerationTask, text: str) -> str:
    """The cleaned, usable text of a model's answer to `task`, or UnusableOutput."""
    clean = _printable(text)
    if task.kind == TaskKind.RENAME:
        return _read_rename(task.context, clean)
    if task.kind == TaskKind.DOCSTRING:
        return _read_docstring(task.context, clean)
    lines, raw = _prose_lines(clean)
    if _is_code(raw):
        raise UnusableOutput("the answer is code, not a sentence")
    return _prose(_join(lines), task.kind, task.context)


# --- characters -------------------------------------------------------------------------------

# A share of control or replacement characters above this means the bytes were not text.
MAX_GARBAGE_SHARE = 0.1


def _printable(text: str) -> str:
    """The text without invisible and control characters; UnusableOutput if nothing is left
    or if it looks like binary data decoded as text."""
    if not text.strip():
        raise UnusableOutput("the answer is empty")
    garbage = sum(1 for char in text if _is_garbage(char))
    if "\x00" in text or garbage > max(2, MAX_GARBAGE_SHARE * len(text)):
        raise UnusableOutput("the answer is binary garbage, not text")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if char in "\n\u2028\u2029":
            kept.append("\n")
        elif char == "\t" or category == "Zs":
            kept.append(" ")
        elif category[0] != "C" and char != "\ufffd":
            kept.append(char)  # Cc, Cf (zero-width, bidi), Co, Cs, Cn are dropped
    return "".join(kept)


def _is_garbage(char: str) -> bool:
    if char == "\ufffd":
        return True
    category = unicodedata.category(char)
    return category in ("Cc", "Cs", "Co", "Cn") and char not in "\n\r\t"


# --- prose ------------------------------------------------------------------------------------

_FENCE = re.compile(r"^\s*(```|~~~)")
# Comment and docstring markers a model may wrap its sentence in.
_MARKERS = re.compile(r'^\s*(?:/\*\*|/\*|\*/|\*|//|#+|"""|\'\'\'|>|[-•]\s)\s*')
_TRAILING_MARKERS = re.compile(r'\s*(?:\*/|"""|\'\'\')\s*$')
# Chat boilerplate at the start of an answer, removed repeatedly.
_LEADS = [
    re.compile(r"^(sure|certainly|of course|okay|ok|absolutely|great|yes)\b[\s,!.:;-]*", re.I),
    re.compile(r"^(here(\s+is|\s+are|'s|\u2019s)|below\s+is)\b[^:\n]*?(:|\.(\s|$))\s*", re.I),
    re.compile(
        r"^(answer|summary|docstring|comment|description|explanation|output|response"
        r"|one[- ]sentence( summary)?|sentence)\s*:\s*",
        re.I,
    ),
    re.compile(r"^(in summary|in short|basically|simply put)\b[\s,:]*", re.I),
]
_SUBJECT_WORDS = (
    "function|method|class|module|file|code|line|script|program|interface|constructor|"
    "statement|expression|snippet"
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(\[])")
# Code has code's punctuation or keywords (and parses: see `_is_code`).
_CODE_SIGNAL = re.compile(r"[(){}\[\]=;:]|\b(?:def|class|function|return|import|const|let|var)\b")
_SYMBOLS = frozenset("{}[]()<>=;+*/\\|&^%$#@~")
MAX_SYMBOL_SHARE = 0.5  # prose is mostly letters


def _prose_lines(text: str) -> tuple[list[str], str]:
    """Non-empty lines without comment markers, and the raw text they come from. What a model
    puts in a code fence is dropped when it wrote something outside the fence, and kept
    otherwise (a fenced sentence)."""
    outside: tuple[list[str], list[str]] = ([], [])
    inside: tuple[list[str], list[str]] = ([], [])
    in_fence = False
    for raw in text.split("\n"):
        if _FENCE.match(raw):
            in_fence = not in_fence
            continue
        line = _MARKERS.sub("", raw, count=1)
        line = _TRAILING_MARKERS.sub("", line).strip()
        if line:
            lines, raws = inside if in_fence else outside
            lines.append(line)
            raws.append(raw)
    lines, raws = outside if outside[0] else inside
    return lines, "\n".join(raws)


def _is_code(raw: str) -> bool:
    """Whether an answer is a piece of code rather than prose: it has code's punctuation or
    keywords, and it parses as Python or JavaScript/TypeScript. Word salad made of code-like
    sub-words does not parse, so it stays usable (as words)."""
    candidate = textwrap.dedent(raw).strip()
    if not candidate or not _CODE_SIGNAL.search(candidate):
        return False
    if syntax_problem(candidate, "python") is None:
        return True
    return any(
        not parse_tree(grammar, candidate).root_node.has_error
        for grammar in ("javascript", "typescript")
    )


def _join(lines: list[str]) -> str:
    """Lines as one text; a line after one that ends a sentence starts a new sentence."""
    joined = ""
    for line in lines:
        if joined.endswith((".", "!", "?")) and line[:1].islower():
            line = line[0].upper() + line[1:]
        joined = f"{joined} {line}" if joined else line
    return joined


def _prose(text: str, kind: TaskKind, context: dict[str, Any]) -> str:
    """One cleaned sentence (or up to three for a summary), safe for the task's language."""
    text = _strip_boilerplate(" ".join(text.split()), context)
    if not text:
        raise UnusableOutput("the answer holds no sentence")
    text = _first_sentences(text, MAX_SENTENCES[kind], MAX_CHARS[kind])
    visible = [char for char in text if not char.isspace()]
    if sum(char in _SYMBOLS for char in visible) > MAX_SYMBOL_SHARE * len(visible):
        raise UnusableOutput("the answer is mostly symbols, not a sentence")
    if sum(char.isalpha() for char in text) < 2:
        raise UnusableOutput("the answer holds no words")
    return _make_safe(_finish(text), str(context.get("language", "")))


def _strip_boilerplate(text: str, context: dict[str, Any]) -> str:
    subjects = _subject_patterns(context)
    previous = None
    while text != previous:
        previous = text
        for pattern in [*_LEADS, *subjects]:
            text = pattern.sub("", text, count=1).strip()
        text = _unwrap(text)
    return text


def _subject_patterns(context: dict[str, Any]) -> list[re.Pattern[str]]:
    """The sentence's subject, which a docstring or comment leaves out: `This function
    returns...` -> `returns...`, `The `save` method is used to store...` -> `store...`,
    `The class `Item` is a record...` -> `a record...`, `` `save` writes...`` -> `writes...`,
    `It checks...` -> `checks...`."""
    names = [str(context[key]) for key in ("name", "qualname") if context.get(key)]
    name = "|".join(re.escape(n) for n in names) or r"(?!)"
    subject = (
        rf"(?:this|the|that)\s+(?:(?:`[^`]+`|\w+)\s+)?(?:{_SUBJECT_WORDS})"
        rf"(?:\s+(?:`[^`]+`|{name})(?:\(\))?)?"
    )
    helper = r"(?:is\s+used\s+to|is\s+responsible\s+for|is\s+meant\s+to|can\s+be\s+used\s+to)"
    return [
        re.compile(rf"^{subject}\s+{helper}\s+", re.I),
        # `The class `Item` is a record of...` -> `A record of...`
        re.compile(rf"^{subject}\s+(?:is|are)\s+(?=(?:a|an|the|one)\b)", re.I),
        re.compile(
            rf"^(?:{subject}|`(?:{name})`(?:\(\))?|(?:{name})\(\)|it)\s+(?=[a-z]+s\b)", re.I
        ),
    ]


def _unwrap(text: str) -> str:
    """Remove quotes or backticks around the whole text."""
    while len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        text = text[1:-1].strip()
    for opening, closing in (("\u201c", "\u201d"), ("\u2018", "\u2019"), ("\u00ab", "\u00bb")):
        if text.startswith(opening) and text.endswith(closing):
            text = text[1:-1].strip()
    return text


def _first_sentences(text: str, count: int, max_chars: int) -> str:
    kept = ""
    for sentence in _SENTENCE_END.split(text)[:count]:
        candidate = f"{kept} {sentence}".strip()
        if len(candidate) > max_chars:
            break
        kept = candidate
    if not kept:  # the first sentence alone is too long: cut it at a word
        kept = textwrap.shorten(text, max_chars, placeholder="")
        if not kept:  # one enormous word
            kept = text[:max_chars]
    return kept


def _finish(text: str) -> str:
    """Capitalised, ending with a full stop."""
    text = text.rstrip(" ,;:-\u2013\u2014")
    if text and text[0].islower():
        text = text[0].upper() + text[1:]
    if text and text[-1] not in ".!?":
        text += "."
    return text


def _make_safe(text: str, language: str) -> str:
    """Nothing that could end the docstring or comment the text goes into."""
    if language == "python":
        text = re.sub(r'"{3,}', '"', text).rstrip("\\")
    else:
        text = text.replace("*/", "* /")
    return text


# --- docstrings -------------------------------------------------------------------------------

_PARAM_LINE = re.compile(
    r"^(?:@param\s+(?:\{[^}]*\}\s+)?|:param\s+(?:[\w\[\], ]+\s+)?)?`?\**\[?([A-Za-z_$][\w$]*)"
    r"(?:=[^\]]*)?\]?`?\s*(?:\([^)]*\))?\s*(?::|\s-|\u2013|\u2014)\s*(.+)$"
)
_RETURNS_LINE = re.compile(r"^(?:@returns?|:returns?:|returns?\s*:|yields?\s*:)\s*(.+)$", re.I)
_SECTION = re.compile(
    r"^(?:args|arguments|parameters|params|returns?|yields?|raises?|-{3,})\s*:?$", re.I
)


def _read_docstring(context: dict[str, Any], text: str) -> str:
    params = [str(p).lstrip("*") for p in context.get("params", [])]
    summary: list[str] = []
    details: dict[str, str] = {}
    lines, raw = _prose_lines(text)
    if _is_code(raw):
        raise UnusableOutput("the answer is code, not a sentence")
    for line in lines:
        param = _PARAM_LINE.match(line)
        returns = _RETURNS_LINE.match(line)
        if param and param.group(1) in params:
            _add_detail(details, param.group(1), param.group(2), context)
        elif returns and (context.get("returns") or context.get("yields")):
            _add_detail(details, RETURNS_KEY, returns.group(1), context)
        elif not _SECTION.match(line):
            summary.append(line)
    if not summary:
        raise UnusableOutput("the answer holds no sentence describing the function")
    first = _prose(_join(summary), TaskKind.DOCSTRING, context)
    return "\n".join([first, *(f"{name}: {text}" for name, text in details.items())])


def _add_detail(details: dict[str, str], key: str, text: str, context: dict[str, Any]) -> None:
    """A parameter's or the result's description, if it reads as one (else left out)."""
    try:
        described = _prose(text, TaskKind.COMMENT, context)
    except UnusableOutput:
        return
    details.setdefault(key, described)


# --- renames ----------------------------------------------------------------------------------

PYTHON_RESERVED = (
    frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset(dir(builtins))
)
JS_RESERVED = frozenset(
    """
    break case catch class const continue debugger default delete do else enum export extends
    false finally for function if import in instanceof new null return super switch this throw
    true try typeof var void while with yield let static implements interface package private
    protected public await async of get set arguments eval undefined NaN Infinity type any
    unknown never number string boolean object symbol bigint declare namespace module readonly
    keyof infer is asserts abstract override satisfies using constructor prototype
    Object Array String Number Boolean Symbol BigInt Math JSON Date RegExp Error Promise Map Set
    WeakMap WeakSet Reflect Proxy Intl console window document globalThis self process require
    exports setTimeout setInterval clearTimeout clearInterval fetch parseInt parseFloat isNaN
    isFinite structuredClone queueMicrotask
    """.split()  # noqa: SIM905 (a word list reads better than 120 quoted strings)
)
_FILLER = frozenset(
    """
    the a an new name names variable var rename renamed renaming to use using call called named
    it is should be better i would suggest could as for this that parameter param instead of
    perhaps maybe like something good clearer more descriptive with and or in my its suggested
    here heres revised version function method class code snippet python javascript typescript
    following updated improved suggestion answer sure okay lines line uses used original
    camelcase snake_case snakecase identifier
    """.split()  # noqa: SIM905
)
_RENAME_LEADS = re.compile(
    r"^(?:(?:the\s+)?(?:new|better|suggested|improved)\s+(?:variable\s+)?name"
    r"(?:\s+(?:is|would be|could be))?\s*[:=]?\s*|name\s*:\s*)",
    re.I,
)
_ARROW = re.compile(r"(?:->|→|=>|\bto\b|\bwith\b)\s*`?([A-Za-z_$][\w$]*)`?")
_BACKTICKED = re.compile(r"`([A-Za-z_$][\w$]*)`")
_WORD = re.compile(r"[A-Za-z_$][\w$]*")
_SEPARATOR = re.compile(r"\s+[-\u2013\u2014]+\s+|:\s+|\s*\(|,\s+|;\s+|\.\s+")
MIN_NAME, MAX_NAME = 3, 40


def _read_rename(context: dict[str, Any], text: str) -> str:
    old = str(context["old_name"])
    python = context.get("language") == "python"
    lines, _ = _prose_lines(text)
    line = lines[0] if lines else ""
    for pattern in [*_LEADS[:2], _RENAME_LEADS]:
        line = pattern.sub("", line, count=1).strip()
    head, reason = _split_reason(line)
    problems: list[str] = []
    for candidate in _name_candidates(head, old):
        name = _to_snake(candidate) if python else _to_camel(candidate)
        problem = _name_problem(name, old, python, context)
        if problem is None:
            return f"{name} - {_reason(reason, old, context)}"
        problems.append(f"{candidate!r} {problem}")
    if not any(problem.endswith("is the same name") for problem in problems):
        # Word salad may hold a usable word further on (not when the model kept the name).
        for candidate in _words(" ".join(lines)):
            name = _to_snake(candidate) if python else _to_camel(candidate)
            if _name_problem(name, old, python, context) is None:
                return f"{name} - {_reason('', old, context)}"
    if not problems:
        raise UnusableOutput("the answer holds no name")
    raise UnusableOutput("no usable new name in the answer: " + "; ".join(problems[:3]))


def _words(text: str) -> list[str]:
    """Identifier-like words, without the filler of chat ("the", "rename", "better"...)."""
    return [word for word in _WORD.findall(text) if word.lower() not in _FILLER]


def _split_reason(line: str) -> tuple[str, str]:
    """`total_count - counts things` -> ("total_count", "counts things")."""
    parts = _SEPARATOR.split(line, maxsplit=1)
    return (parts[0], parts[1]) if len(parts) == 2 else (line, "")


def _name_candidates(head: str, old: str) -> list[str]:
    """Possible new names, most likely first: after `to`/`->`, in backticks, the words joined
    (`total count` -> total_count), then each word on its own."""
    found = [m.group(1) for m in _ARROW.finditer(head)]
    found += [name for name in _BACKTICKED.findall(head) if name != old]
    words = _words(head)
    if 2 <= len(words) <= 3 and re.fullmatch(r"[A-Za-z_$\s-]+", head.strip("`'\" ")):
        found.append("_".join(words))
    found += words
    return list(dict.fromkeys(found))  # in order, without repeats


def _name_problem(name: str, old: str, python: bool, context: dict[str, Any]) -> str | None:
    """Why `name` cannot replace `old`, or None if it can."""
    if not name.isascii() or not _WORD.fullmatch(name):
        return "is not a valid identifier"
    convention = r"_?[a-z][a-z0-9]*(?:_[a-z0-9]+)*" if python else r"_?[a-z$][A-Za-z0-9$]*"
    if not re.fullmatch(convention, name):
        return "does not follow the naming convention"
    if name == old:
        return "is the same name"
    if name in (PYTHON_RESERVED if python else JS_RESERVED):
        return "is a keyword or built-in name"
    if not MIN_NAME <= len(name) <= MAX_NAME or is_unclear_name(name):
        return "is no clearer"
    if name in context.get("taken", ()):
        return "is already used in that scope"
    return None


def _to_snake(name: str) -> str:
    """camelCase or PascalCase -> snake_case; snake_case stays."""
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    name = re.sub(r"(?<=[A-Z])(?=[A-Z][a-z])", "_", name)
    return re.sub(r"_+", "_", name.replace("$", "")).lower()


def _to_camel(name: str) -> str:
    """snake_case or PascalCase -> camelCase (a leading underscore is kept)."""
    lead = "_" if name.startswith("_") else ""
    if name.isupper():
        name = name.lower()
    parts = [part for part in name.split("_") if part]
    if not parts:
        return name
    first = parts[0][:1].lower() + parts[0][1:]
    return lead + first + "".join(part[:1].upper() + part[1:] for part in parts[1:])


def _reason(text: str, old: str, context: dict[str, Any]) -> str:
    try:
        return _prose(text, TaskKind.COMMENT, context)
    except UnusableOutput:
        return f"`{old}` does not say what it holds."
