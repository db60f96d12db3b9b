"""What analysis finds in a file: symbols, docstring styles, tricky lines."""

from __future__ import annotations

import pytest

from services.docs.analysis import analyze
from services.docs.findings import Symbol, detect_docstring_style, is_unclear_name
from tests.unit.docs.samples import JAVASCRIPT, NUMPY_PYTHON, PYTHON, REST_PYTHON, TYPESCRIPT


def by_name(symbols: list[Symbol]) -> dict[str, Symbol]:
    return {symbol.qualname: symbol for symbol in symbols}


def test_python_symbols() -> None:
    symbols = by_name(analyze("python", "python", PYTHON).symbols)

    assert list(symbols) == [
        "Item",
        "Item.value",
        "Item.parse",
        "parse_line",
        "load",
        "low_stock",
        "gen",
    ]
    value = symbols["Item.value"]
    assert (value.kind, value.params, value.param_types) == ("method", ("price",), ("float",))
    assert value.returns_value
    assert value.return_type == "float"
    assert (value.doc_line, value.doc_indent) == (23, "        ")  # the body's first line
    assert symbols["Item.parse"].params == ("text",)  # a static method keeps its first one
    assert symbols["load"].params == ("path", "*args", "**kwargs")
    assert symbols["gen"].yields
    assert not symbols["gen"].returns_value
    assert symbols["Item"].docstring is not None
    assert symbols["Item"].docstring.startswith("An item in stock.")
    assert symbols["low_stock"].docstring == "Items whose quantity is below the limit."
    assert symbols["parse_line"].docstring is None


def test_python_nested_async_and_undocumentable_functions() -> None:
    content = (
        "async def outer():\n"
        "    def inner(self, x) -> None:\n"
        "        return None\n"
        "    return inner\n"
        "def one_liner(): return 1\n"
        "def continued(): \\\n"
        "    return 1\n"
    )
    symbols = by_name(analyze("python", "python", content).symbols)

    assert symbols["outer"].returns_value
    inner = symbols["outer.inner"]
    assert inner.kind == "function"
    assert inner.params == ("x",)
    assert not inner.returns_value  # `-> None`
    assert not symbols["one_liner"].documentable  # the body is on the `def` line
    assert not symbols["continued"].documentable  # a backslash joins the lines


def test_docstring_styles() -> None:
    assert analyze("python", "python", PYTHON).style == "google"
    assert analyze("python", "python", NUMPY_PYTHON).style == "numpy"
    assert analyze("python", "python", REST_PYTHON).style == "rest"
    assert detect_docstring_style([]) == "google"
    assert detect_docstring_style(["One line only."]) == "google"


def test_module_docstring_and_summary_line() -> None:
    analysis = analyze("python", "python", PYTHON)
    assert not analysis.has_file_doc
    assert analysis.file_doc_line == 2  # after the shebang and the licence header
    documented = analyze("python", "python", '"""Doc."""\nx = 1\n')
    assert documented.has_file_doc
    # Comments that run straight into code describe that code: the summary goes above them.
    assert analyze("python", "python", "# The answer.\nx = 42\n").file_doc_line == 0
    encoded = analyze("python", "python", "# -*- coding: utf-8 -*-\nx = 1\n")
    assert encoded.file_doc_line == 1
    assert not analyze("python", "python", "# only a comment\n").has_code


def test_typescript_symbols() -> None:
    symbols = by_name(analyze("typescript", "typescript", TYPESCRIPT).symbols)

    assert list(symbols) == [
        "Line",
        "Cart",
        "Cart.constructor",
        "Cart.add",
        "Cart.total",
        "Cart.handle",
        "parseQuery",
    ]
    assert symbols["Line"].kind == "interface"
    assert symbols["Line"].docstring == "/** A line in the cart. */"
    assert symbols["Cart.total"].docstring is not None
    assert symbols["Cart"].doc_line == 11  # the `export` line
    add = symbols["Cart.add"]
    assert add.doc_line == 16
    assert add.doc_indent == "  "
    assert add.params == ("item", "qty")
    assert not add.returns_value  # `: void`
    assert not symbols["Cart.constructor"].returns_value
    assert symbols["Cart.constructor"].params == ("currency",)
    assert symbols["Cart.handle"].kind == "method"
    assert symbols["Cart.handle"].params == ("event",)
    query = symbols["parseQuery"]
    assert query.kind == "function"
    assert query.returns_value
    assert query.doc_line == 40


def test_javascript_symbols() -> None:
    analysis = analyze("javascript", "javascript", JAVASCRIPT)
    symbols = by_name(analysis.symbols)

    assert symbols["clamp"].params == ("val", "lo", "hi")
    assert symbols["documented"].docstring is not None
    assert symbols["Counter.ticks"].yields
    assert analysis.file_doc_line == 0
    assert not analysis.has_file_doc
    with_file_doc = analyze("javascript", "javascript", "/** @file Tools. */\nconst a = 1;\n")
    assert with_file_doc.has_file_doc


def test_python_tricky_lines() -> None:
    tricky = analyze("python", "python", PYTHON).tricky_lines
    lines = {item.line: item for item in tricky}

    assert set(lines) == {40, 41, 50}
    assert "bit operation" in lines[41].reasons
    # `mask = ...` has a comment above, `print(mask)` a trailing one: neither gets another.
    assert 43 not in lines
    assert 44 not in lines


def test_at_most_eight_tricky_lines() -> None:
    body = "".join(f"    v{n} = [x for x in range({n + 7}) if x & {n + 3}]\n" for n in range(20))
    tricky = analyze("python", "python", "def f():\n" + body).tricky_lines
    assert len(tricky) == 8
    assert [item.line for item in tricky] == sorted(item.line for item in tricky)


def test_typescript_tricky_lines() -> None:
    tricky = analyze("typescript", "typescript", TYPESCRIPT).tricky_lines
    lines = {item.line: item for item in tricky}

    assert "bit operation" in lines[36].reasons
    assert "regular expression" in lines[46].reasons


@pytest.mark.parametrize(
    ("name", "unclear"),
    [
        ("tmp", True),
        ("data", True),
        ("tmp2", True),
        ("res", True),
        ("m", True),
        ("ab", True),
        ("x", False),
        ("n", False),
        ("_", False),
        ("id", False),
        ("total", False),
        ("parts", False),
    ],
)
def test_unclear_names(name: str, unclear: bool) -> None:
    assert is_unclear_name(name) is unclear


def test_conventional_short_names_in_their_roles() -> None:
    assert is_unclear_name("i")
    assert not is_unclear_name("i", loop_index=True)
    assert is_unclear_name("e")
    assert not is_unclear_name("e", exception=True)
