"""Unclear names and every place naming the same binding, with exact positions."""

from __future__ import annotations

from contracts.docs import Language
from services.docs.analysis import analyze
from services.docs.findings import RenameCandidate
from services.docs.text import Span

SCOPES = """\
tmp = "module"

def outer(tmp, scale=2):
    def closure():
        return tmp * scale
    def shadowing(tmp):
        return tmp + 1
    def rebinding():
        tmp = 3
        return tmp
    def declaring():
        nonlocal tmp
        tmp += 1
    def using_global():
        global tmp
        return tmp
    obj.tmp = tmp
    call(tmp=tmp)
    squares = [tmp for tmp in range(3)]
    doubled = [tmp * k for k in range(3)]
    class Inner:
        tmp = 5
        def method(self):
            return tmp
    return closure, Inner
"""


def candidates(language: Language, content: str) -> dict[tuple[str, str], RenameCandidate]:
    grammar = "python" if language == "python" else language
    found = analyze(language, grammar, content).renames
    return {(candidate.function, candidate.name): candidate for candidate in found}


def positions(candidate: RenameCandidate) -> list[tuple[int, int]]:
    return [(span.line, span.start) for span in candidate.occurrences]


def test_python_occurrences_follow_scopes() -> None:
    found = candidates("python", SCOPES)
    outer = found[("outer", "tmp")]

    assert outer.role == "parameter"
    assert positions(outer) == [
        (2, 10),  # the parameter
        (4, 15),  # used in a closure
        (11, 17),  # `nonlocal tmp` names it
        (12, 8),  # and rebinds it
        (16, 14),  # `obj.tmp = tmp`: the value, not the attribute
        (17, 13),  # `call(tmp=tmp)`: the value, not the keyword
        (19, 15),  # free in a comprehension
        (23, 19),  # a method skips its class's own `tmp`
    ]
    # Not: the module's `tmp`, `shadowing`'s parameter, `rebinding`'s local, `global tmp`,
    # the comprehension variable, the class attribute. Those are other bindings:
    assert found[("outer.shadowing", "tmp")].occurrences == (Span(5, 18, 21), Span(6, 15, 18))
    assert positions(found[("outer.rebinding", "tmp")]) == [(8, 8), (9, 15)]
    for span in outer.occurrences:
        assert SCOPES.split("\n")[span.line][span.start : span.end] == "tmp"


def test_python_names_that_are_clear_or_conventional_are_left_alone() -> None:
    content = (
        "def f(items, n):\n"
        "    total = 0\n"
        "    for i in range(n):\n"
        "        total += items[i]\n"
        "    try:\n"
        "        pass\n"
        "    except ValueError as e:\n"
        "        print(e)\n"
        "    return total\n"
    )
    assert candidates("python", content) == {}


def test_python_except_name_and_self_are_handled() -> None:
    content = (
        "class A:\n"
        "    def run(self, f):\n"
        "        try:\n"
        "            f()\n"
        "        except (ValueError, TypeError) as ex:\n"
        "            raise RuntimeError(ex) from ex\n"
    )
    found = candidates("python", content)
    assert set(found) == {("A.run", "f"), ("A.run", "ex")}  # not `self`
    assert positions(found[("A.run", "ex")]) == [(4, 42), (5, 31), (5, 40)]


def test_python_columns_count_characters() -> None:
    content = 'def greet(nm):\n    return "héllo, " + nm + "! ünïcode " + nm\n'
    found = candidates("python", content)[("greet", "nm")]
    assert found.occurrences == (Span(0, 10, 12), Span(1, 23, 25), Span(1, 43, 45))
    lines = content.split("\n")
    assert all(lines[span.line][span.start : span.end] == "nm" for span in found.occurrences)


def test_python_taken_names_include_the_function_and_module_names() -> None:
    content = "total = 1\n\ndef f(tmp):\n    count = tmp + total\n    return count\n"
    taken = candidates("python", content)[("f", "tmp")].taken
    assert {"total", "count", "tmp"} <= taken


def test_python_unlocatable_bindings_are_not_suggested() -> None:
    content = "def f():\n    import os.path as op2\n    return op2\n"
    assert candidates("python", content) == {}


def test_javascript_occurrences_skip_properties_and_shadowing() -> None:
    content = (
        "function outer(tmp) {\n"
        "  const obj = { tmp: 1 };\n"
        "  obj.tmp = tmp;\n"
        "  function inner(tmp) { return tmp; }\n"
        "  const use = () => tmp + 1;\n"
        "  return inner(tmp) + use();\n"
        "}\n"
        "function shorthand(res) {\n"
        "  return { res };\n"
        "}\n"
    )
    found = candidates("javascript", content)

    assert positions(found[("outer", "tmp")]) == [(0, 15), (2, 12), (4, 20), (5, 15)]
    assert positions(found[("outer.inner", "tmp")]) == [(3, 17), (3, 31)]
    assert ("shorthand", "res") not in found  # `{ res }` would change the object's key


def test_typescript_block_scoped_redeclaration_is_not_suggested() -> None:
    content = (
        "export function f(flag: boolean): number {\n"
        "  if (flag) { const val = 1; return val; }\n"
        "  const val = 2;\n"
        "  return val;\n"
        "}\n"
    )
    assert ("f", "val") not in candidates("typescript", content)


def test_typescript_columns_count_characters() -> None:
    content = 'const greet = (nm: string) => {\n  return "héllo " + nm;\n};\n'
    found = candidates("typescript", content)[("greet", "nm")]
    assert found.occurrences == (Span(0, 15, 17), Span(1, 20, 22))


def test_at_most_eight_renames() -> None:
    body = "".join(f"    t{n} = {n}\n" for n in range(12))
    content = "def f():\n" + body + "    return " + " + ".join(f"t{n}" for n in range(12)) + "\n"
    assert len(analyze("python", "python", content).renames) == 8
