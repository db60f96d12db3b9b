"""Lines and columns of a file's text.

Every position this package hands out is 0-based and counts characters (Unicode code points),
as `schemas.Position` says. Python's `ast` and tree-sitter both report columns as UTF-8 *byte*
offsets within a line, so everything that reads their positions goes through
`SourceText.char_column`.

Lines are separated by "\\n" only; a "\\r" before it stays part of the line's text (CRLF files
keep their line endings). Files that break lines with a lone "\\r" are refused up front
(`languages.check_content`), because Python's parser would count those lines differently.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Span:
    """A range of text on one line: `line`, and columns `start` (inclusive) to `end`."""

    line: int
    start: int
    end: int

    def as_list(self) -> list[int]:
        """The JSON-friendly form kept in task contexts: [line, start, line, end]."""
        return [self.line, self.start, self.line, self.end]


@dataclass
class SourceText:
    """A file's text with fast conversions between (line, column) and offsets."""

    content: str
    lines: list[str] = field(init=False)
    line_starts: list[int] = field(init=False)
    _encoded: dict[int, bytes] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.lines = self.content.split("\n")
        starts = [0]
        for line in self.lines[:-1]:
            starts.append(starts[-1] + len(line) + 1)
        self.line_starts = starts

    @property
    def newline(self) -> str:
        """The line ending that inserted text should use: CRLF if the file uses it."""
        return "\r\n" if "\r\n" in self.content else "\n"

    def line_text(self, line: int) -> str:
        """The text of a line without its line ending."""
        return self.lines[line].removesuffix("\r")

    def indent(self, line: int) -> str:
        """The leading spaces and tabs of a line."""
        text = self.line_text(line)
        return text[: len(text) - len(text.lstrip(" \t"))]

    def is_blank(self, line: int) -> bool:
        return not self.line_text(line).strip()

    def starts_line(self, line: int, column: int) -> bool:
        """Whether only indentation precedes `column` on `line`."""
        return not self.line_text(line)[:column].strip(" \t")

    def char_column(self, line: int, byte_column: int) -> int:
        """Convert a UTF-8 byte offset within a line into a character offset."""
        text = self.lines[line]
        if text.isascii():
            return byte_column
        encoded = self._encoded.get(line)
        if encoded is None:
            encoded = self._encoded[line] = text.encode("utf-8")
        return len(encoded[:byte_column].decode("utf-8", errors="ignore"))

    def offset(self, line: int, column: int) -> int:
        """The offset in `content` of a position; ValueError if it is not inside the text.

        A column may point at the end of a line's text but not between its "\\r" and "\\n"."""
        if not 0 <= line < len(self.lines):
            raise ValueError(f"line {line} is outside the text ({len(self.lines)} lines)")
        if not 0 <= column <= len(self.line_text(line)):
            raise ValueError(f"column {column} is outside line {line}")
        return self.line_starts[line] + column

    def text_at(self, span: Span) -> str:
        return self.line_text(span.line)[span.start : span.end]
