"""The text inserted into a file: docstrings in the file's style, JSDoc, comments.

Each function returns whole lines, ending with the file's line ending, to insert at column 0
of a line. The sentences come from `reading.read_answer` (already safe); everything here also
escapes defensively, so that no text can end a docstring or comment early.
"""

from __future__ import annotations

import re
import textwrap
import unicodedata
from dataclasses import dataclass

from services.docs.findings import DocStyle

PYTHON_WIDTH = 79  # PEP 8
JS_WIDTH = 80
MIN_WIDTH = 40


@dataclass(frozen=True)
class Param:
    name: str  # as documented: "*args" keeps its star
    type: str | None
    description: str


@dataclass(frozen=True)
class DocText:
    """What a docstring says: a summary, the parameters, and the result if there is one."""

    summary: str
    params: list[Param]
    returns: str | None  # description of the return value (None: nothing returned)
    return_type: str | None = None
    yields: bool = False


def describe(name: str) -> str:
    """A plain description for a parameter the model did not describe: `user_id` -> "The user
    id."."""
    if name.startswith("**"):
        return "Additional keyword arguments."
    if name.startswith("*") or name.startswith("..."):
        return "Additional positional arguments."
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name.strip("_$")).replace("_", " ")
    return f"The {words.lower() or name}."


# --- Python -----------------------------------------------------------------------------------


def python_docstring(doc: DocText, style: DocStyle, indent: str, newline: str) -> str:
    """A function's or class's docstring, indented, with its sections in `style`."""
    width = max(MIN_WIDTH, PYTHON_WIDTH - len(indent.expandtabs()))
    lines = _wrap(doc.summary, width - 3)
    sections = _python_sections(doc, style, width)
    if sections:
        lines = [*lines, "", *sections]
    return _python_literal(lines, indent, newline)


def python_module_docstring(summary: str, newline: str, blank_after: bool) -> str:
    """A module docstring: the first sentence, then the others as a paragraph."""
    first, *rest = re.split(r"(?<=[.!?])\s+", summary.strip(), maxsplit=1)
    lines = _wrap(first, PYTHON_WIDTH - 3)
    if rest:
        lines = [*lines, "", *_wrap(rest[0], PYTHON_WIDTH)]
    return _python_literal(lines, "", newline) + (newline if blank_after else "")


def _python_literal(lines: list[str], indent: str, newline: str) -> str:
    escaped = [_escape_python(line) for line in lines]
    if len(escaped) == 1:
        return f'{indent}"""{_protect_end(escaped[0])}"""{newline}'
    body = [f'{indent}"""{escaped[0]}', *(indent + line if line else "" for line in escaped[1:])]
    return newline.join([*body, f'{indent}"""']) + newline


def _escape_python(line: str) -> str:
    """Backslashes doubled (the docstring then reads exactly as the text), no triple quote."""
    line = line.replace("\\", "\\\\")
    return re.sub(r'"{3,}', '"', line)


def _protect_end(text: str) -> str:
    """A one-line docstring must not end with a double quote: the closing quotes would then
    be four, and the string would end one character early."""
    return text[:-1] + '\\"' if text.endswith('"') else text


def _python_sections(doc: DocText, style: DocStyle, width: int) -> list[str]:
    if style == "numpy":
        return _numpy_sections(doc, width)
    if style == "rest":
        return _rest_sections(doc, width)
    return _google_sections(doc, width)


def _google_sections(doc: DocText, width: int) -> list[str]:
    lines: list[str] = []
    if doc.params:
        lines.append("Args:")
        for param in doc.params:
            lines += _hanging(f"    {param.name}: ", param.description, width, "        ")
    if doc.returns is not None:
        lines += [""] if lines else []
        lines.append("Yields:" if doc.yields else "Returns:")
        lines += _hanging("    ", doc.returns, width, "    ")
    return lines


def _numpy_sections(doc: DocText, width: int) -> list[str]:
    lines: list[str] = []
    if doc.params:
        lines += ["Parameters", "----------"]
        for param in doc.params:
            lines.append(f"{param.name} : {param.type}" if param.type else param.name)
            lines += _hanging("    ", param.description, width, "    ")
    if doc.returns is not None:
        title = "Yields" if doc.yields else "Returns"
        lines += [""] if lines else []
        lines += [title, "-" * len(title), doc.return_type or "object"]
        lines += _hanging("    ", doc.returns, width, "    ")
    return lines


def _rest_sections(doc: DocText, width: int) -> list[str]:
    lines: list[str] = []
    for param in doc.params:
        lines += _hanging(f":param {param.name.lstrip('*')}: ", param.description, width, "    ")
    if doc.returns is not None:
        field = ":yields: " if doc.yields else ":returns: "
        lines += _hanging(field, doc.returns, width, "    ")
    return lines


# --- JavaScript and TypeScript ----------------------------------------------------------------


def jsdoc(doc: DocText, indent: str, newline: str) -> str:
    """A JSDoc block. Types are left out: TypeScript has them in the signature."""
    width = max(MIN_WIDTH, JS_WIDTH - len(indent.expandtabs()) - 3)
    summary = _wrap(doc.summary, width)
    tags: list[str] = []
    for param in doc.params:
        tags += _hanging(f"@param {param.name} - ", param.description, width, "  ")
    if doc.returns is not None:
        tags += _hanging("@yields " if doc.yields else "@returns ", doc.returns, width, "  ")
    if not tags and len(summary) == 1 and len(summary[0]) + 7 <= width:
        return f"{indent}/** {_escape_block(summary[0])} */{newline}"
    lines = [*summary, "", *tags] if tags else summary
    return _block_comment(lines, indent, newline)


def js_file_comment(summary: str, newline: str, blank_after: bool) -> str:
    """A `/** @file ... */` block at the top of a file."""
    lines = _hanging("@file ", summary, JS_WIDTH - 3, "  ")
    return _block_comment(lines, "", newline) + (newline if blank_after else "")


def _block_comment(lines: list[str], indent: str, newline: str) -> str:
    body = [f"{indent} * {_escape_block(line)}" if line else f"{indent} *" for line in lines]
    return newline.join([f"{indent}/**", *body, f"{indent} */"]) + newline


def _escape_block(line: str) -> str:
    return line.replace("*/", "* /")


# --- comments ---------------------------------------------------------------------------------


def line_comment(text: str, indent: str, python: bool, newline: str) -> str:
    """A whole-line comment: `# ...` or `// ...`, on one line whatever the text holds."""
    return f"{indent}{'#' if python else '//'} {_one_line(text)}{newline}"


# --- wrapping ---------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    """The text on one line, without control or invisible characters (any line break, NUL,
    bidi control... whatever reached this far)."""
    single = " ".join(text.split())  # line breaks and tabs become spaces first
    return "".join(char for char in single if unicodedata.category(char)[0] != "C")


def _wrap(text: str, width: int) -> list[str]:
    wrapped = textwrap.wrap(_one_line(text), width, break_long_words=False, break_on_hyphens=False)
    return wrapped or [""]


def _hanging(first: str, text: str, width: int, rest: str) -> list[str]:
    """`first` + text wrapped, the following lines indented with `rest`."""
    return textwrap.wrap(
        _one_line(text),
        width,
        initial_indent=first,
        subsequent_indent=rest,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [first.rstrip()]
