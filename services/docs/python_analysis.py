"""Python files, read with `ast` (structure) and `tokenize` (comments, names without nodes).

Three things are found here:

* **Symbols**: functions (sync, async, methods, nested) and classes, with their parameters and
  where a docstring goes: before the first statement of the body, at its indentation.
* **Tricky lines**: statements inside functions that deserve a comment, by a simple score (see
  `_score`); a line needs 3 points, and the best `MAX_COMMENTS` of a file are kept.
* **Unclear names** (`is_unclear_name`) of parameters and local variables, with every place that
  names the same binding. Python's scoping rules are applied: a nested function (or lambda,
  comprehension, class body) that binds the name again shadows it, unless it declares it
  `nonlocal`; uses in nested functions that do not rebind it are included; attributes
  (`obj.tmp`) and keyword arguments at call sites (`f(tmp=1)`) are different things and are
  left out. A name bound in a way this module does not locate (an import, a `def`, a `match`
  capture) is not suggested at all, so that a suggestion is never half a rename.
"""

from __future__ import annotations

import ast
import bisect
import contextlib
import io
import itertools
import re
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass, field

from services.docs.findings import (
    MAX_COMMENTS,
    MAX_RENAMES,
    FileAnalysis,
    RenameCandidate,
    Symbol,
    TrickyLine,
    detect_docstring_style,
    file_doc_line,
    is_unclear_name,
)
from services.docs.languages import parse_python
from services.docs.text import SourceText, Span

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, *COMPREHENSIONS)
SELF_NAMES = frozenset({"self", "cls", "mcs", "metacls"})
NO_VALUE_RETURNS = frozenset({"None", "NoReturn", "Never", "typing.NoReturn", "typing.Never"})
_ENCODING_LINE = re.compile(r"^[ \t\f]*#.*?coding[:=]")


def analyze_python(content: str) -> FileAnalysis:
    text = SourceText(content)
    tree = parse_python(content)
    tokens = _Tokens(content)
    symbols = _symbols(tree, text)
    docstrings = [symbol.docstring for symbol in symbols if symbol.docstring]
    module_doc = ast.get_docstring(tree)
    if module_doc:
        docstrings.append(module_doc)
    return FileAnalysis(
        language="python",
        grammar="python",
        symbols=symbols,
        style=detect_docstring_style(docstrings),
        has_file_doc=module_doc is not None,
        file_doc_line=_module_doc_line(text),
        has_code=bool(tree.body),
        tricky_lines=_tricky_lines(tree, text, tokens),
        renames=_renames(tree, text, tokens),
    )


def _module_doc_line(text: SourceText) -> int:
    first = 1 if text.lines[0].startswith("#!") else 0
    for line in (0, 1):
        if line >= first and line < len(text.lines) and _ENCODING_LINE.match(text.lines[line]):
            first = line + 1
    return file_doc_line(text, first, lambda line: text.line_text(line).lstrip().startswith("#"))


# --- tokens -----------------------------------------------------------------------------------


@dataclass
class _Tokens:
    """What `tokenize` knows and `ast` does not: comments, and where bare names are.

    Tokenizing a str gives character columns, so no conversion is needed here."""

    content: str
    comment_lines: set[int] = field(default_factory=set)  # lines holding a comment
    comment_only_lines: set[int] = field(default_factory=set)  # lines that are just a comment
    names: list[tuple[int, int, str]] = field(default_factory=list)  # (line, column, name)

    def __post_init__(self) -> None:
        readline = io.StringIO(self.content).readline
        # What was read before an error is kept; ast accepted the file, so errors are rare.
        with contextlib.suppress(tokenize.TokenError, SyntaxError):
            self._read(tokenize.generate_tokens(readline))

    def _read(self, tokens: Iterator[tokenize.TokenInfo]) -> None:
        for token in tokens:
            line, column = token.start[0] - 1, token.start[1]
            if token.type == tokenize.COMMENT:
                self.comment_lines.add(line)
                if not token.line[:column].strip():
                    self.comment_only_lines.add(line)
            elif token.type == tokenize.NAME:
                self.names.append((line, column, token.string))

    def names_between(self, start: tuple[int, int], end: tuple[int, int]) -> list[Span]:
        """NAME tokens from `start` (inclusive) to `end` (exclusive), as spans."""
        low = bisect.bisect_left(self.names, (start[0], start[1], ""))
        high = bisect.bisect_left(self.names, (end[0], end[1], ""))
        return [Span(line, col, col + len(name)) for line, col, name in self.names[low:high]]


# --- symbols ----------------------------------------------------------------------------------


def _symbols(tree: ast.Module, text: SourceText) -> list[Symbol]:
    found: list[Symbol] = []

    def visit(node: ast.AST, prefix: str, in_class: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, FUNCTIONS):
                found.append(_function_symbol(child, prefix, in_class, text))
                visit(child, f"{prefix}{child.name}.", False)
            elif isinstance(child, ast.ClassDef):
                found.append(_class_symbol(child, prefix, text))
                visit(child, f"{prefix}{child.name}.", True)
            elif isinstance(child, ast.stmt | ast.excepthandler | ast.match_case):
                visit(child, prefix, in_class)

    visit(tree, "", False)
    return found


def _function_symbol(node: FunctionNode, prefix: str, in_class: bool, text: SourceText) -> Symbol:
    params, types = _documented_params(node.args)
    return_type = ast.unparse(node.returns) if node.returns else None
    returns, yields = _returns_and_yields(node)
    line, indent, documentable = _doc_position(node, text)
    overload = any(ast.unparse(d).split(".")[-1] == "overload" for d in node.decorator_list)
    return Symbol(
        name=node.name,
        qualname=prefix + node.name,
        kind="method" if in_class else "function",
        params=params,
        param_types=types,
        returns_value=returns and return_type not in NO_VALUE_RETURNS,
        yields=yields,
        return_type=return_type,
        start_line=_first_line(node),
        end_line=(node.end_lineno or node.lineno) - 1,
        doc_line=line,
        doc_indent=indent,
        docstring=ast.get_docstring(node),
        documentable=documentable and not overload,
    )


def _class_symbol(node: ast.ClassDef, prefix: str, text: SourceText) -> Symbol:
    line, indent, documentable = _doc_position(node, text)
    return Symbol(
        name=node.name,
        qualname=prefix + node.name,
        kind="class",
        params=(),
        param_types=(),
        returns_value=False,
        yields=False,
        return_type=None,
        start_line=_first_line(node),
        end_line=(node.end_lineno or node.lineno) - 1,
        doc_line=line,
        doc_indent=indent,
        docstring=ast.get_docstring(node),
        documentable=documentable,
    )


def _first_line(node: ast.stmt) -> int:
    """A statement's first line (0-based), its decorators included."""
    decorators: list[ast.expr] = getattr(node, "decorator_list", [])
    return min([node.lineno, *(decorator.lineno for decorator in decorators)]) - 1


def _doc_position(node: FunctionNode | ast.ClassDef, text: SourceText) -> tuple[int, str, bool]:
    """Where a docstring goes: before the body's first statement, at its indentation.

    Not possible (False) when the body starts on the header's line (`def f(): return 1`)."""
    first = node.body[0]
    line = _first_line(first)
    if line > 0 and text.line_text(line - 1).endswith("\\"):
        return line, "", False  # the line before continues onto this one
    indent = text.indent(line)
    rest = text.line_text(line)[len(indent) :]
    if getattr(first, "decorator_list", None):
        starts_line = rest.startswith("@")
    else:
        starts_line = text.char_column(line, first.col_offset) == len(indent)
    return line, indent, starts_line and line > node.lineno - 1


def _documented_params(args: ast.arguments) -> tuple[tuple[str, ...], tuple[str | None, ...]]:
    """Parameter names as a docstring lists them (no self/cls, stars kept) and annotations."""
    ordered: list[tuple[str, ast.arg]] = [(a.arg, a) for a in [*args.posonlyargs, *args.args]]
    if ordered and ordered[0][0] in SELF_NAMES:
        ordered = ordered[1:]
    if args.vararg:
        ordered.append(("*" + args.vararg.arg, args.vararg))
    ordered.extend((a.arg, a) for a in args.kwonlyargs)
    if args.kwarg:
        ordered.append(("**" + args.kwarg.arg, args.kwarg))
    names = tuple(name for name, _ in ordered)
    types = tuple(ast.unparse(a.annotation) if a.annotation else None for _, a in ordered)
    return names, types


def _returns_and_yields(node: FunctionNode) -> tuple[bool, bool]:
    returns = yields = False
    for child in _own_nodes(node):
        if isinstance(child, ast.Return) and child.value is not None:
            is_none = isinstance(child.value, ast.Constant) and child.value.value is None
            returns = returns or not is_none
        elif isinstance(child, ast.Yield | ast.YieldFrom):
            yields = True
    return returns and node.name != "__init__", yields


# --- tricky lines -----------------------------------------------------------------------------

# The regular-expression functions of `re` (and of the `regex` package, same names).
_REGEX_FUNCTIONS = frozenset(
    {"compile", "match", "search", "fullmatch", "sub", "subn", "split", "findall", "finditer"}
)
_BIT_OPERATORS = (ast.BitAnd, ast.BitXor, ast.LShift, ast.RShift)
# Numbers too common to be "magic".
_PLAIN_NUMBERS = frozenset({0, 1, 2, -1, 10, 100, 0.5})
_LONG_LINE = 90
DENSE_OPERATORS = 4
MIN_SCORE = 3


def _tricky_lines(tree: ast.Module, text: SourceText, tokens: _Tokens) -> list[TrickyLine]:
    """The statements inside functions most worth a comment, at most MAX_COMMENTS."""
    found: list[TrickyLine] = []
    functions = [node for node in ast.walk(tree) if isinstance(node, FUNCTIONS)]
    for function in functions:
        for statement in _statements(function.body):
            line = statement.lineno - 1
            if not _commentable(statement, line, text, tokens):
                continue
            score, reasons = _score(statement, text)
            if score >= MIN_SCORE:
                found.append(TrickyLine(line, text.indent(line), score, tuple(reasons)))
    best = sorted(found, key=lambda tricky: (-tricky.score, tricky.line))[:MAX_COMMENTS]
    return sorted(best, key=lambda tricky: tricky.line)


def _statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements of a function body, into if/for/while/with/try/match blocks but not into
    nested functions or classes (those are visited as functions of their own)."""
    for statement in body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        yield statement
        for name in ("body", "orelse", "finalbody"):
            yield from _statements(getattr(statement, name, []))
        for handler in getattr(statement, "handlers", []):
            yield from _statements(handler.body)
        for case in getattr(statement, "cases", []):
            yield from _statements(case.body)


def _commentable(statement: ast.stmt, line: int, text: SourceText, tokens: _Tokens) -> bool:
    """A comment can go above: the statement starts its line, nobody commented it yet, and it
    is not a docstring."""
    if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
        return False
    if isinstance(statement, ast.Pass | ast.Break | ast.Continue | ast.Global | ast.Nonlocal):
        return False
    if text.char_column(line, statement.col_offset) != len(text.indent(line)):
        return False  # e.g. `if ready: go()`: `go()` does not start a line
    if line > 0 and text.line_text(line - 1).endswith("\\"):
        return False
    return line not in tokens.comment_lines and line - 1 not in tokens.comment_only_lines


def _header(statement: ast.stmt) -> list[ast.AST]:
    """The expressions of a statement that its first lines hold (not its nested blocks)."""
    if isinstance(statement, ast.If | ast.While):
        return [statement.test]
    if isinstance(statement, ast.For | ast.AsyncFor):
        return [statement.target, statement.iter]
    if isinstance(statement, ast.With | ast.AsyncWith):
        return list(statement.items)
    if isinstance(statement, ast.Match):
        return [statement.subject]
    if isinstance(statement, ast.Try):
        return []
    if isinstance(statement, ast.AnnAssign):  # not the annotation: `int | None` is no bit trick
        return (
            [statement.target] if statement.value is None else [statement.target, statement.value]
        )
    return [statement]


def _score(statement: ast.stmt, text: SourceText) -> tuple[int, list[str]]:
    """Points for what makes a line hard to read at a glance.

    comprehension 3, bit operation 3, regular expression 3, lambda 2, conditional expression 2,
    calls nested 3 deep 2, slice with a step 2, magic number 1 each (at most 2), compound
    condition 1, dense expression (4+ binary, boolean or comparison operators) 3, long line
    (> 90 characters) 1."""
    points: dict[str, int] = {}
    magic = operators = 0
    for root in _header(statement):
        for node in ast.walk(root):
            if isinstance(node, COMPREHENSIONS):
                points["comprehension"] = 3
            elif isinstance(node, ast.Lambda):
                points["lambda"] = 2
            elif isinstance(node, ast.IfExp):
                points["conditional expression"] = 2
            elif _is_bit_operation(node):
                points["bit operation"] = 3
            elif _is_regex_call(node):
                points["regular expression"] = 3
            elif isinstance(node, ast.Slice) and node.step is not None:
                points["slice with a step"] = 2
            elif _is_magic_number(node):
                magic += 1
            elif _is_compound_condition(node):
                points["compound condition"] = 1
            operators += _operator_count(node)
        if _call_depth(root) >= 3:
            points["nested calls"] = 2
    if magic:
        points["magic number"] = min(magic, 2)
    if operators >= DENSE_OPERATORS:
        points["dense expression"] = 3
    if len(text.line_text(statement.lineno - 1)) > _LONG_LINE:
        points["long line"] = 1
    return sum(points.values()), sorted(points)


def _operator_count(node: ast.AST) -> int:
    if isinstance(node, ast.BinOp):
        return 1
    if isinstance(node, ast.BoolOp):
        return len(node.values) - 1
    return len(node.ops) if isinstance(node, ast.Compare) else 0


def _is_compound_condition(node: ast.AST) -> bool:
    if isinstance(node, ast.BoolOp):
        return len(node.values) >= 3
    return isinstance(node, ast.Compare) and len(node.ops) >= 2


def _is_bit_operation(node: ast.AST) -> bool:
    """`&`, `^`, `<<`, `>>`, `~`; and `|` on numbers (not `a | b` on sets or types)."""
    if isinstance(node, ast.UnaryOp):
        return isinstance(node.op, ast.Invert)
    if not isinstance(node, ast.BinOp | ast.AugAssign):
        return False
    if not isinstance(node.op, ast.BitOr):
        return isinstance(node.op, _BIT_OPERATORS)
    sides = (node.left, node.right) if isinstance(node, ast.BinOp) else (node.target, node.value)
    return any(_is_number(side) or _is_bit_operation(side) for side in sides)


def _is_number(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in (int, float)


def _is_regex_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return False
    owner = node.func.value
    return (
        isinstance(owner, ast.Name)
        and owner.id in ("re", "regex")
        and node.func.attr in _REGEX_FUNCTIONS
    )


def _is_magic_number(node: ast.AST) -> bool:
    if not isinstance(node, ast.Constant) or isinstance(node.value, bool):
        return False
    return isinstance(node.value, int | float) and node.value not in _PLAIN_NUMBERS


def _call_depth(root: ast.AST) -> int:
    """How deeply calls nest in an expression (`f(g(h(x)))` and `a().b().c()` are 3)."""
    deepest = 0
    stack: list[tuple[ast.AST, int]] = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, ast.Call):
            depth += 1
            deepest = max(deepest, depth)
        if isinstance(node, (ast.Lambda, *COMPREHENSIONS)):
            continue  # scored on their own
        stack.extend((child, depth) for child in ast.iter_child_nodes(node))
    return deepest


# --- scopes -----------------------------------------------------------------------------------


def _all_args(args: ast.arguments) -> list[ast.arg]:
    extra = [a for a in (args.vararg, args.kwarg) if a is not None]
    return [*args.posonlyargs, *args.args, *args.kwonlyargs, *extra]


def _inner_and_outer(scope: ast.AST) -> tuple[list[ast.AST], list[ast.AST]]:
    """A scope's parts evaluated inside it, and those evaluated in the enclosing scope
    (decorators, default values, annotations, base classes, a comprehension's first iterable).
    """
    if isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
        args = scope.args
        outer: list[ast.AST] = [*args.defaults, *(d for d in args.kw_defaults if d is not None)]
        inner: list[ast.AST] = [*_all_args(args)]
        if isinstance(scope, ast.Lambda):
            return [*inner, scope.body], outer
        outer.extend(scope.decorator_list)
        outer.extend(a.annotation for a in _all_args(args) if a.annotation is not None)
        if scope.returns is not None:
            outer.append(scope.returns)
        return [*inner, *scope.body], outer
    if isinstance(scope, ast.ClassDef):
        return list(scope.body), [*scope.decorator_list, *scope.bases, *scope.keywords]
    if isinstance(scope, COMPREHENSIONS):
        first, *others = scope.generators
        elements: list[ast.AST] = (
            [scope.key, scope.value] if isinstance(scope, ast.DictComp) else [scope.elt]
        )
        inner = [*elements, first.target, *first.ifs]
        for generator in others:
            inner.extend([generator.target, generator.iter, *generator.ifs])
        return inner, [first.iter]
    if isinstance(scope, ast.Module):
        return list(scope.body), []
    raise TypeError(f"not a scope: {type(scope).__name__}")


def _own_nodes(scope: ast.AST) -> Iterator[ast.AST]:
    """Every node that belongs to `scope` itself: nested scopes are yielded (their names bind
    here) with their outer parts, but not their insides."""
    stack = list(reversed(_inner_and_outer(scope)[0]))
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.arg):
            continue  # its annotation belongs to the enclosing scope (an outer part)
        if isinstance(node, SCOPES):
            stack.extend(reversed(_inner_and_outer(node)[1]))
        else:
            stack.extend(reversed(list(ast.iter_child_nodes(node))))


@dataclass
class _Bindings:
    """How each name is bound in one scope ("parameter", "assign", "loop", "except", "def",
    "import", "match"), and which names it declares global or nonlocal."""

    kinds: dict[str, set[str]] = field(default_factory=dict)
    globals: set[str] = field(default_factory=set)
    nonlocals: set[str] = field(default_factory=set)

    def add(self, name: str, kind: str) -> None:
        self.kinds.setdefault(name, set()).add(kind)

    def is_local(self, name: str) -> bool:
        return name in self.kinds and name not in self.globals and name not in self.nonlocals


def _bindings(scope: ast.AST) -> _Bindings:
    found = _Bindings()
    walrus_targets: set[int] = set()
    loop_targets: set[int] = set()
    for node in _own_nodes(scope):
        if isinstance(node, ast.NamedExpr):
            walrus_targets.add(id(node.target))
        elif isinstance(node, ast.For | ast.AsyncFor):
            loop_targets.update(id(n) for n in ast.walk(node.target))
        _record_binding(node, found, loop_targets)
    if isinstance(scope, COMPREHENSIONS):
        # `[y := f(x) for x in xs]` binds y in the enclosing function, not here.
        for name in _walrus_names(scope):
            kinds = found.kinds.get(name, set())
            kinds.discard("assign")
            if not kinds:
                found.kinds.pop(name, None)
    elif not isinstance(scope, ast.ClassDef):
        for comprehension in _nested_comprehensions(scope):
            for name in _walrus_names(comprehension):
                found.add(name, "assign")
    return found


def _record_binding(node: ast.AST, found: _Bindings, loop_targets: set[int]) -> None:
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
        found.add(node.id, "loop" if id(node) in loop_targets else "assign")
    elif isinstance(node, ast.arg):
        found.add(node.arg, "parameter")
    elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        found.add(node.name, "def")
    elif isinstance(node, ast.Import | ast.ImportFrom):
        for alias in node.names:
            if alias.name != "*":
                found.add(alias.asname or alias.name.split(".")[0], "import")
    elif isinstance(node, ast.ExceptHandler) and node.name:
        found.add(node.name, "except")
    elif isinstance(node, ast.MatchAs | ast.MatchStar) and node.name:
        found.add(node.name, "match")
    elif isinstance(node, ast.MatchMapping) and node.rest:
        found.add(node.rest, "match")
    elif isinstance(node, ast.Global):
        found.globals.update(node.names)
    elif isinstance(node, ast.Nonlocal):
        found.nonlocals.update(node.names)


def _walrus_names(comprehension: ast.AST) -> set[str]:
    names = set()
    for node in _own_nodes(comprehension):
        if isinstance(node, ast.NamedExpr) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    for inner in _nested_comprehensions(comprehension):
        names |= _walrus_names(inner)
    return names


def _nested_comprehensions(scope: ast.AST) -> list[ast.AST]:
    return [node for node in _own_nodes(scope) if isinstance(node, COMPREHENSIONS)]


# --- renames ----------------------------------------------------------------------------------


class _Unlocatable(Exception):
    """A binding whose position this module does not find precisely: no suggestion then."""


def _renames(tree: ast.Module, text: SourceText, tokens: _Tokens) -> list[RenameCandidate]:
    module_names = set(_bindings(tree).kinds)
    functions = sorted(
        (node for node in ast.walk(tree) if isinstance(node, FUNCTIONS)),
        key=lambda node: (node.lineno, node.col_offset),
    )
    qualnames = _qualnames(tree)
    found: list[RenameCandidate] = []
    for function in functions:  # the first functions' names, once there are enough
        found.extend(_function_renames(function, qualnames, module_names, text, tokens))
        if len(found) >= MAX_RENAMES:
            break
    found.sort(
        key=lambda candidate: (candidate.occurrences[0].line, candidate.occurrences[0].start)
    )
    return found[:MAX_RENAMES]


def _qualnames(tree: ast.Module) -> dict[int, str]:
    names: dict[int, str] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names[id(child)] = prefix + child.name
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return names


def _function_renames(
    function: FunctionNode,
    qualnames: dict[int, str],
    module_names: set[str],
    text: SourceText,
    tokens: _Tokens,
) -> Iterator[RenameCandidate]:
    bindings = _bindings(function)
    positional = [*function.args.posonlyargs, *function.args.args]
    receiver = positional[0].arg if positional and positional[0].arg in SELF_NAMES else None
    taken: frozenset[str] | None = None
    for name, kinds in bindings.kinds.items():
        if not bindings.is_local(name) or name == receiver:
            continue
        if kinds & {"def", "import", "match"}:
            continue
        unclear = is_unclear_name(name, loop_index="loop" in kinds, exception="except" in kinds)
        if not unclear:
            continue
        try:
            spans = _occurrences(function, name, text, tokens)
        except _Unlocatable:
            continue
        if taken is None:
            taken = frozenset(_names_used(function) | module_names)
        yield RenameCandidate(
            name=name,
            role="parameter" if "parameter" in kinds else "variable",
            function=qualnames.get(id(function), function.name),
            function_start=_first_line(function),
            function_end=(function.end_lineno or function.lineno) - 1,
            occurrences=tuple(spans),
            taken=taken,
        )


def _names_used(function: FunctionNode) -> set[str]:
    """Every name a function mentions or binds, nested scopes included: a new name equal to
    one of these could clash or capture."""
    names: set[str] = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            names.update(node.names)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
        elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and node.name:
            names.add(node.name)
    return names


def _occurrences(
    function: FunctionNode, name: str, text: SourceText, tokens: _Tokens
) -> list[Span]:
    """Every place naming `function`'s own binding of `name`, in document order."""
    spans: list[Span] = []
    cache: dict[int, _Bindings] = {}

    def bindings(scope: ast.AST) -> _Bindings:
        if id(scope) not in cache:
            cache[id(scope)] = _bindings(scope)
        return cache[id(scope)]

    def visit(scope: ast.AST, here: bool, in_functions: bool) -> None:
        """`here`: `name` in this scope is the binding we rename; `in_functions`: so it is in
        functions nested here (class bodies do not pass their own names on to those)."""
        for node in _own_nodes(scope):
            if here:
                spans.extend(_locate(node, name, text, tokens))
            if isinstance(node, ast.ClassDef):
                inner = bindings(node)
                shadowed = name in inner.kinds or name in inner.globals
                visit(
                    node, in_functions and (name in inner.nonlocals or not shadowed), in_functions
                )
            elif isinstance(node, SCOPES):
                inner = bindings(node)
                if name in inner.nonlocals:
                    refers = in_functions
                else:
                    refers = in_functions and name not in inner.kinds and name not in inner.globals
                visit(node, refers, refers)

    visit(function, True, True)
    for span in spans:
        if text.text_at(span) != name:  # a position we got wrong: better no suggestion
            raise _Unlocatable(name)
    return sorted(set(spans), key=lambda span: (span.line, span.start))


def _locate(node: ast.AST, name: str, text: SourceText, tokens: _Tokens) -> list[Span]:
    """Where `node` names `name` (none if it does not)."""
    if isinstance(node, ast.Name) and node.id == name:
        return [_span_at(text, node.lineno - 1, node.col_offset, name)]
    if isinstance(node, ast.arg) and node.arg == name:
        return [_span_at(text, node.lineno - 1, node.col_offset, name)]
    if isinstance(node, ast.ExceptHandler) and node.name == name:
        return [_except_name(node, name, text, tokens)]
    if isinstance(node, ast.Nonlocal | ast.Global) and name in node.names:
        line, end_line = node.lineno - 1, (node.end_lineno or node.lineno) - 1
        start = (line, text.char_column(line, node.col_offset))
        end = (end_line, text.char_column(end_line, node.end_col_offset or 0))
        return [s for s in tokens.names_between(start, end) if text.text_at(s) == name]
    if _binds_unlocated(node, name):
        raise _Unlocatable(name)
    return []


def _span_at(text: SourceText, line: int, byte_column: int, name: str) -> Span:
    start = text.char_column(line, byte_column)
    return Span(line, start, start + len(name))


def _except_name(handler: ast.ExceptHandler, name: str, text: SourceText, tokens: _Tokens) -> Span:
    """The name after `as` in `except ValueError as name:` (ast gives no position for it)."""
    line, body = handler.lineno - 1, handler.body[0]
    start = (line, text.char_column(line, handler.col_offset))
    end = (body.lineno - 1, text.char_column(body.lineno - 1, body.col_offset))
    names = tokens.names_between(start, end)
    after_as = [b for a, b in itertools.pairwise(names) if text.text_at(a) == "as"]
    if not after_as or text.text_at(after_as[-1]) != name:
        raise _Unlocatable(name)
    return after_as[-1]


def _binds_unlocated(node: ast.AST, name: str) -> bool:
    """Bindings this module does not locate: imports, definitions, `match` captures."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        return any((alias.asname or alias.name.split(".")[0]) == name for alias in node.names)
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return node.name == name
    if isinstance(node, ast.MatchAs | ast.MatchStar):
        return node.name == name
    return isinstance(node, ast.MatchMapping) and node.rest == name
