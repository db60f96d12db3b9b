"""Which language a file is in, and which content is refused before any model is asked."""

from __future__ import annotations

import pytest

from contracts.docs import Language
from core.errors import ValidationFailed
from services.docs.languages import check_content, detect_language, grammar_for


@pytest.mark.parametrize(
    ("path", "language"),
    [
        ("app/models.py", "python"),
        ("stubs/api.pyi", "python"),
        ("web/index.js", "javascript"),
        ("web/App.jsx", "javascript"),
        ("lib/esm.mjs", "javascript"),
        ("lib/cjs.cjs", "javascript"),
        ("src/cart.ts", "typescript"),
        ("src/Cart.TSX", "typescript"),
        ("src/mod.mts", "typescript"),
        ("src/mod.cts", "typescript"),
    ],
)
def test_language_from_extension(path: str, language: Language) -> None:
    assert detect_language(path, None) == language


def test_explicit_language_wins_over_extension() -> None:
    assert detect_language("script", "python") == "python"
    assert detect_language("notes.txt", "typescript") == "typescript"


@pytest.mark.parametrize(
    ("path", "language"), [("main.rb", None), ("Makefile", None), ("a.py", "ruby")]
)
def test_unknown_language_is_refused_with_the_supported_ones(
    path: str, language: str | None
) -> None:
    with pytest.raises(ValidationFailed) as raised:
        detect_language(path, language)
    field = raised.value.details["fields"][0]
    assert field["field"] == "language"
    for supported in ("python", "javascript", "typescript", ".tsx"):
        assert supported in raised.value.message


def test_tsx_uses_the_tsx_grammar() -> None:
    jsx = "const C = () => <div className={x}>hi</div>;\n"
    assert grammar_for("typescript", "ui/C.tsx") == "tsx"
    assert grammar_for("typescript", "ui/c.ts") == "typescript"
    assert grammar_for("typescript", None, jsx) == "tsx"  # guessed from the content
    check_content(jsx, "typescript", "ui/C.tsx")
    with pytest.raises(ValidationFailed):
        check_content(jsx, "typescript", "ui/c.ts")


def test_valid_content_passes() -> None:
    check_content("def f(x):\n    return x\n", "python", "a.py")
    check_content("export const f = (x: number): number => x;\n", "typescript", "a.ts")
    check_content("const f = (x) => <b>{x}</b>;\n", "javascript", "a.jsx")
    check_content("x = 1\r\ny = 2\r\n", "python", "crlf.py")
    check_content("", "python", "empty.py")


@pytest.mark.parametrize(
    "content",
    [
        "x = 1\x00\x00\x01",
        "".join(chr(c) for c in range(1, 32) if chr(c) not in "\t\n\r\f") * 3 + "x = 1\n",
        "\ufffd\ufffd\ufffd\ufffd\ufffd\ufffdx = 1\n",
    ],
)
def test_binary_content_is_refused(content: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        check_content(content, "python", "a.py")
    assert raised.value.details["fields"][0]["field"] == "content"
    assert "binary" in raised.value.message


def test_a_few_control_characters_are_tolerated() -> None:
    check_content('ESC = "\x1b"\n' + "x = 1\n" * 100, "python", "a.py")


def test_unparsable_python_says_where() -> None:
    with pytest.raises(ValidationFailed) as raised:
        check_content("def ok():\n    pass\n\nvalue = (1,\n  2 +)\n", "python", "a.py")
    assert raised.value.details["fields"][0]["field"] == "content"
    assert "Python" in raised.value.message
    assert "line 5, column 6" in raised.value.message


def test_unparsable_typescript_says_where_in_characters() -> None:
    content = "const é = 1;\nconst ü = (1 + ;\n"
    with pytest.raises(ValidationFailed) as raised:
        check_content(content, "typescript", "a.ts")
    message = raised.value.message
    assert "TypeScript" in message
    assert "line 2" in message
    column = int(message.rsplit("column ", 1)[1])
    assert column <= len("const ü = (1 + ;")  # characters, not bytes


def test_unparsable_javascript_is_refused() -> None:
    with pytest.raises(ValidationFailed) as raised:
        check_content("function f( {\n", "javascript", "a.js")
    assert "JavaScript" in raised.value.message


def test_lone_carriage_returns_are_refused() -> None:
    with pytest.raises(ValidationFailed) as raised:
        check_content("x = 1\ry = 2\r", "python", "a.py")
    assert "carriage return" in raised.value.message
