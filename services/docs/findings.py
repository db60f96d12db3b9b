"""What analysing a file finds, as far as documenting it goes: the same shapes for every
language (`FileAnalysis`: its functions and classes and where their documentation goes, the
lines worth a comment, and the variables with unclear names), and the rules the language
analysers share (where a file summary goes, which names are unclear, docstring styles).
`analysis.analyze` fills them in; planning turns them into model calls.

All lines and columns are 0-based; columns count characters (see `text.py`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from contracts.docs import Language
from services.docs.languages import Grammar
from services.docs.text import SourceText, Span

SymbolKind = Literal["function", "method", "class", "interface"]
DocStyle = Literal["google", "numpy", "rest", "jsdoc"]
RenameRole = Literal["parameter", "variable"]

# At most this many COMMENT and RENAME tasks per file, so that a big file stays a bounded job.
MAX_COMMENTS = 8
MAX_RENAMES = 8


@dataclass(frozen=True)
class Symbol:
    """A function, method, class (or TypeScript interface) and where its documentation goes."""

    name: str
    qualname: str  # "Outer.method", "outer.inner"
    kind: SymbolKind
    params: tuple[str, ...]  # as documented: no self/cls; "*args", "**kwargs" keep their stars
    param_types: tuple[str | None, ...]  # Python annotations as written (NumPy style shows them)
    returns_value: bool  # a `return <value>` (or an arrow function's expression body)
    yields: bool  # a generator
    return_type: str | None
    start_line: int  # first line of the symbol, decorators included
    end_line: int  # last line (inclusive)
    doc_line: int  # the line before which the docstring / JSDoc is inserted
    doc_indent: str  # its indentation
    docstring: str | None  # the existing docstring or JSDoc text, if any
    documentable: bool = True  # False when no docstring can be inserted without moving code


@dataclass(frozen=True)
class TrickyLine:
    """A line inside a function worth a comment above it, and why (for the record)."""

    line: int
    indent: str
    score: int
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class RenameCandidate:
    """A parameter or local variable with an unclear name, and every place naming it."""

    name: str
    role: RenameRole
    function: str  # qualname of the declaring function
    function_start: int  # its first and last lines, to quote it in the prompt
    function_end: int
    occurrences: tuple[Span, ...]
    taken: frozenset[str]  # names a new name must not be: they would clash or capture


@dataclass
class FileAnalysis:
    language: Language
    grammar: Grammar
    symbols: list[Symbol]
    style: DocStyle
    has_file_doc: bool  # a module docstring (Python) or an @file / @fileoverview comment
    file_doc_line: int  # where a file summary is inserted
    has_code: bool  # anything besides comments (an empty file gets no summary)
    tricky_lines: list[TrickyLine] = field(default_factory=list)
    renames: list[RenameCandidate] = field(default_factory=list)


def file_doc_line(text: SourceText, first: int, is_comment_line: Callable[[int], bool]) -> int:
    """Where a file summary goes: at `first` (the line after a shebang or encoding line), or
    after the header comments that start there (a licence, say) when a blank line ends them.

    Comments that run straight into code are taken to describe that code, so the summary
    goes above them."""
    line = first
    while line < len(text.lines) and is_comment_line(line):
        line += 1
    if line > first and line < len(text.lines) and text.is_blank(line):
        return line
    return first


# --- names ------------------------------------------------------------------------------------

# Short names that are clear in their usual role (a loop index, a count, coordinates, an
# exception, "unused"), and two-letter words that say what they hold.
CONVENTIONAL_SHORT = frozenset({"n", "x", "y", "_"})
LOOP_INDICES = frozenset({"i", "j", "k"})
EXCEPTION_NAMES = frozenset({"e"})
MEANINGFUL_SHORT = frozenset(
    {"id", "ok", "db", "fn", "cb", "io", "os", "re", "np", "pd", "df", "ui", "op", "ip", "el",
     "ms", "px", "tz", "dt", "ts", "to", "at", "by", "$"}
)  # fmt: skip
# Names that say nothing about what they hold, with or without a number after them.
GENERIC_NAMES = re.compile(
    r"(tmp|temp|data|val|res|obj|foo|bar|baz|ret|arr|lst|dct|dict_|list_|stuff|thing|var)\d*",
    re.IGNORECASE,
)


def is_unclear_name(name: str, *, loop_index: bool = False, exception: bool = False) -> bool:
    """Whether a variable name says too little (the RENAME heuristic).

    Unclear: one- or two-character names, except `n x y _`, `i j k` used as loop indices,
    `e` bound to an exception, and a few two-letter words (`id`, `ok`, `db`, ...); and generic
    names such as tmp, data, val, res, obj, foo, temp, ret, arr, lst, dct (also `tmp2`)."""
    if name in CONVENTIONAL_SHORT or name in MEANINGFUL_SHORT:
        return False
    if name in LOOP_INDICES and loop_index:
        return False
    if name in EXCEPTION_NAMES and exception:
        return False
    if len(name.strip("_")) <= 2:
        return True
    return GENERIC_NAMES.fullmatch(name) is not None


# --- Python docstring styles ------------------------------------------------------------------

_NUMPY = re.compile(
    r"^\s*(Parameters|Returns|Yields|Raises|Attributes|Examples?)\s*\n\s*-{3,}\s*$", re.M
)
_REST = re.compile(r"^\s*:(param|parameter|arg|returns?|rtype|raises?|type)\b", re.M)
_GOOGLE = re.compile(
    r"^\s*(Args|Arguments|Returns|Yields|Raises|Attributes|Examples?|Note):\s*$", re.M
)


def detect_docstring_style(docstrings: list[str]) -> DocStyle:
    """The style most of a file's docstrings use: NumPy, reST or Google (the default)."""
    votes = {"google": 0, "numpy": 0, "rest": 0}
    for docstring in docstrings:
        if _NUMPY.search(docstring):
            votes["numpy"] += 1
        elif _REST.search(docstring):
            votes["rest"] += 1
        elif _GOOGLE.search(docstring):
            votes["google"] += 1
    if votes["numpy"] > max(votes["google"], votes["rest"]):
        return "numpy"
    if votes["rest"] > max(votes["google"], votes["numpy"]):
        return "rest"
    return "google"
