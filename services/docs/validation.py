"""Checks that edits are safe to hand to a plugin.

`check_edits` is the gate every result passes: the edits apply in order without overlapping,
the edited file still parses, every edit only inserts text, removing the inserted text gives the
original back byte for byte, and each insertion really is a comment or a docstring:

* Python: the inserted text tokenizes as COMMENT tokens, or as the STRING token that is now the
  docstring of a module, class or function (`ast.get_docstring`); docstrings the file had are
  still there, unchanged.
* JavaScript / TypeScript: tree-sitter `comment` nodes cover the inserted text.

Whitespace (indentation, line breaks) may surround the inserted comments.
"""

from __future__ import annotations

import ast
import bisect
import io
import tokenize
from collections.abc import Sequence

from services.docs.languages import Grammar, parse_python, parse_tree, syntax_problem, walk
from services.docs.schemas import Edit
from services.docs.text import SourceText

DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


class InvalidResult(Exception):
    """The edits built from the model's answers fail a check; the message says which."""


def apply_edits(content: str, edits: Sequence[Edit]) -> str:
    """`content` with the edits applied. The edits must be in document order and must not
    overlap (two insertions at one position are ambiguous, so they count as overlapping)."""
    return _apply(content, edits)[0]


def _apply(content: str, edits: Sequence[Edit]) -> tuple[str, list[tuple[int, int]]]:
    """The patched text, and where each edit's new text lies in it (offsets)."""
    text = SourceText(content)
    pieces: list[str] = []
    placed: list[tuple[int, int]] = []
    cursor = 0  # how far `content` has been copied
    length = 0  # length of the patched text so far
    previous_start = -1
    for index, edit in enumerate(edits):
        try:
            start = text.offset(edit.start.line, edit.start.column)
            end = text.offset(edit.end.line, edit.end.column)
        except ValueError as error:
            raise InvalidResult(f"edit {index} is outside the file: {error}") from error
        if end < start:
            raise InvalidResult(f"edit {index} ends before it starts")
        if start < cursor or start == previous_start:
            raise InvalidResult(f"edit {index} overlaps the one before or is out of order")
        pieces.append(content[cursor:start])
        length += start - cursor
        pieces.append(edit.new_text)
        placed.append((length, length + len(edit.new_text)))
        length += len(edit.new_text)
        cursor = end
        previous_start = start
    pieces.append(content[cursor:])
    return "".join(pieces), placed


def check_edits(content: str, edits: Sequence[Edit], grammar: Grammar) -> str:
    """The patched content, once every check passes; InvalidResult otherwise."""
    for index, edit in enumerate(edits):
        if edit.start != edit.end:
            raise InvalidResult(f"edit {index} replaces code instead of inserting text")
    patched, inserted = _apply(content, edits)
    if _without(patched, inserted) != content:
        raise InvalidResult("the code outside the inserted text changed")
    problem = syntax_problem(patched, grammar)
    if problem is not None:
        raise InvalidResult(f"the edited file does not parse: {problem}")
    if grammar == "python":
        allowed = _python_comments_and_docstrings(content, patched)
    else:
        allowed = _js_comments(patched, grammar)
    for start, end in inserted:
        _check_covered(patched, start, end, allowed)
    return patched


def _without(patched: str, inserted: list[tuple[int, int]]) -> str:
    kept, cursor = [], 0
    for start, end in inserted:
        kept.append(patched[cursor:start])
        cursor = end
    kept.append(patched[cursor:])
    return "".join(kept)


def _check_covered(patched: str, start: int, end: int, allowed: list[tuple[int, int]]) -> None:
    """Outside the allowed intervals (comments, docstrings) the inserted text is whitespace,
    and every allowed interval it touches lies wholly inside it."""
    first = bisect.bisect_left(allowed, (start, start)) - 1
    cursor = start
    for low, high in allowed[max(first, 0) :]:
        if low >= end:
            break
        if high <= start:
            continue
        if low < start or high > end:
            raise InvalidResult("an insertion changes an existing comment or string")
        if patched[cursor:low].strip():
            raise InvalidResult(f"inserted text is not a comment: {patched[cursor:low]!r}")
        cursor = high
    if patched[cursor:end].strip():
        raise InvalidResult(f"inserted text is not a comment: {patched[cursor:end]!r}")


def _python_comments_and_docstrings(content: str, patched: str) -> list[tuple[int, int]]:
    text = SourceText(patched)
    tree = parse_python(patched)
    _check_docstrings_kept(parse_python(content), tree)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, DOCUMENTED) and ast.get_docstring(node, clean=False) is not None:
            first = node.body[0]
            line = first.lineno - 1
            docstrings.add((line, text.char_column(line, first.col_offset)))
    allowed: list[tuple[int, int]] = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(patched).readline):
            position = (token.start[0] - 1, token.start[1])
            if token.type == tokenize.COMMENT or (
                token.type == tokenize.STRING and position in docstrings
            ):
                start = text.offset(*position)
                allowed.append((start, text.offset(token.end[0] - 1, token.end[1])))
    except (tokenize.TokenError, SyntaxError, ValueError) as error:
        raise InvalidResult(f"the edited file does not tokenize: {error}") from error
    return allowed


def _check_docstrings_kept(before: ast.Module, after: ast.Module) -> None:
    """Every docstring the file had is still the docstring of the same definition."""
    old = [node for node in ast.walk(before) if isinstance(node, DOCUMENTED)]
    new = [node for node in ast.walk(after) if isinstance(node, DOCUMENTED)]
    if len(old) != len(new):
        raise InvalidResult("the edited file defines different functions or classes")
    for was, now in zip(old, new, strict=True):
        if getattr(was, "name", None) != getattr(now, "name", None):
            raise InvalidResult("the edited file defines different functions or classes")
        kept = ast.get_docstring(was, clean=False)
        if kept is not None and ast.get_docstring(now, clean=False) != kept:
            raise InvalidResult(f"the docstring of {getattr(was, 'name', 'the module')} changed")


def _js_comments(patched: str, grammar: Grammar) -> list[tuple[int, int]]:
    text = SourceText(patched)
    allowed = []
    for node in walk(parse_tree(grammar, patched).root_node):
        if node.type == "comment":
            (first, start), (last, end) = node.start_point, node.end_point
            low = text.offset(first, text.char_column(first, start))
            allowed.append((low, text.offset(last, text.char_column(last, end))))
    return sorted(allowed)
