"""Which language a file is in, and whether its content can be documented at all.

Python is parsed with Python's own `ast`; JavaScript and TypeScript with the tree-sitter
grammars bundled in `tree-sitter-language-pack`. TypeScript has two grammars: `.tsx` files
(TypeScript with JSX) need the `tsx` one, everything else uses `typescript`. JavaScript's grammar
understands JSX already.
"""

from __future__ import annotations

import ast
import unicodedata
import warnings
from collections.abc import Iterator
from typing import Literal

import tree_sitter
from tree_sitter_language_pack import get_parser

from contracts.docs import Language
from core.errors import ValidationFailed
from services.docs.text import SourceText

Grammar = Literal["python", "javascript", "typescript", "tsx"]

EXTENSIONS: dict[str, Language] = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".jsx": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
}
SUPPORTED = (
    "python (.py, .pyi), javascript (.js, .jsx, .mjs, .cjs), typescript (.ts, .tsx, .mts, .cts)"
)

# Content is "binary" when it holds a NUL, or when more than this share of its characters are
# control characters other than tab, newline, carriage return and form feed (or U+FFFD, the
# mark a failed decoding leaves behind).
MAX_CONTROL_SHARE = 0.01
ALLOWED_CONTROLS = frozenset("\t\n\r\f")


def detect_language(file_path: str, language: str | None) -> Language:
    """The language of a file: `language` when given, otherwise from the file's extension."""
    if language is not None:
        if language in ("python", "javascript", "typescript"):
            return language  # type: ignore[return-value]  # checked just above
        raise ValidationFailed.for_field(
            "language", f"Unsupported language {language!r}; supported languages: {SUPPORTED}"
        )
    dot = file_path.rfind(".")
    extension = file_path[dot:].lower() if dot > file_path.rfind("/") else ""
    if extension in EXTENSIONS:
        return EXTENSIONS[extension]
    raise ValidationFailed.for_field(
        "language",
        f"Cannot tell the language of {file_path!r} from its extension; set `language` to one "
        f"of the supported languages: {SUPPORTED}",
    )


def grammar_for(language: Language, file_path: str | None = None, content: str = "") -> Grammar:
    """The parser to use. Without a path, TypeScript that only parses as TSX is taken as TSX."""
    if language != "typescript":
        return language
    if file_path is not None:
        return "tsx" if file_path.lower().endswith(".tsx") else "typescript"
    only_tsx = (
        content
        and parse_tree("typescript", content).root_node.has_error
        and not parse_tree("tsx", content).root_node.has_error
    )
    return "tsx" if only_tsx else "typescript"


def check_content(content: str, language: Language, file_path: str) -> None:
    """Refuse content that cannot be documented: binary data, or text that does not parse.

    Raises ValidationFailed on the field `content` with a message a user can act on."""
    problem = binary_problem(content)
    if problem is None and _has_lone_carriage_return(content):
        problem = (
            "The file breaks lines with lone carriage returns (CR); use LF or CRLF line endings"
        )
    if problem is None:
        problem = syntax_problem(content, grammar_for(language, file_path, content))
    if problem is not None:
        raise ValidationFailed.for_field("content", problem)


def binary_problem(content: str) -> str | None:
    """Why the content looks binary, or None if it looks like text."""
    if "\x00" in content:
        return "The content is binary (it contains NUL bytes), not source code"
    if not content:
        return None
    controls = sum(1 for char in content if _is_suspicious(char))
    if controls > max(4, MAX_CONTROL_SHARE * len(content)):
        return "The content is binary (too many control characters), not source code"
    return None


def _is_suspicious(char: str) -> bool:
    if char == "\ufffd":
        return True
    return char not in ALLOWED_CONTROLS and unicodedata.category(char) == "Cc"


def _has_lone_carriage_return(content: str) -> bool:
    return content.count("\r") != content.count("\r\n")


def syntax_problem(content: str, grammar: Grammar) -> str | None:
    """A message saying where the content stops parsing, or None if it parses.

    Lines and columns in the message are 1-based, as editors show them."""
    if grammar == "python":
        return _python_syntax_problem(content)
    tree = parse_tree(grammar, content)
    if not tree.root_node.has_error:
        return None
    name = "TypeScript" if grammar in ("typescript", "tsx") else "JavaScript"
    bad = _first_error_node(tree.root_node)
    if bad is None:  # has_error with no node to blame: should not happen, stay vague
        return f"The content does not parse as {name}"
    text = SourceText(content)
    row, byte_column = bad.start_point
    column = text.char_column(row, byte_column) if row < len(text.lines) else byte_column
    what = f"missing {bad.type!r}" if bad.is_missing else "syntax error"
    return f"The content does not parse as {name}: {what} at line {row + 1}, column {column + 1}"


def parse_python(content: str) -> ast.Module:
    """`ast.parse` without the warnings that invalid escape sequences print."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ast.parse(content)


def _python_syntax_problem(content: str) -> str | None:
    try:
        parse_python(content)
    except SyntaxError as error:  # IndentationError and TabError are SyntaxErrors too
        # Since Python 3.10 `offset` counts characters (1-based) when parsing a str.
        where = f"line {error.lineno}, column {error.offset}" if error.lineno else "unknown line"
        return f"The content does not parse as Python: {error.msg} at {where}"
    except (RecursionError, MemoryError):
        return "The content does not parse as Python: it is nested too deeply"
    return None


def parse_tree(grammar: Grammar, content: str) -> tree_sitter.Tree:
    """Parse JavaScript, TypeScript or TSX with tree-sitter (positions in UTF-8 bytes)."""
    if grammar == "python":
        raise ValueError("Python is parsed with ast, not tree-sitter")
    return get_parser(grammar).parse(content.encode("utf-8"))


def walk(node: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    """Every node under `node` (itself included), in document order, without recursion."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


def _first_error_node(root: tree_sitter.Node) -> tree_sitter.Node | None:
    """The innermost node of the first syntax error (ERROR or MISSING), for a precise place."""
    node, found = root, None
    while True:
        bad = next((c for c in node.children if c.is_missing or c.has_error), None)
        if bad is None:
            return found
        node = found = bad
