"""`analyze`: parse a file and find what documenting it needs (the shapes are in `findings`),
with the analyser of its language: Python with `ast`, JavaScript and TypeScript with
tree-sitter. Nothing here calls a model."""

from __future__ import annotations

from contracts.docs import Language
from services.docs.findings import FileAnalysis
from services.docs.js_analysis import analyze_js
from services.docs.languages import Grammar
from services.docs.python_analysis import analyze_python


def analyze(language: Language, grammar: Grammar, content: str) -> FileAnalysis:
    """Parse `content` (which must parse: see `languages.check_content`) and analyse it."""
    if language == "python":
        return analyze_python(content)
    return analyze_js(language, grammar, content)
