"""JavaScript and TypeScript files, read with tree-sitter.

* **Symbols**: function declarations, arrow functions and function expressions assigned to
  `const`/`let`/`var`, classes, class methods and class fields holding a function, TypeScript
  interfaces; exported or not. JSDoc goes on the line of the declaration (of its `export`, or
  of its first decorator), at that line's indentation. An existing JSDoc is a `/** */` comment
  ending on the line just above.
* **Tricky lines**: statements inside functions, scored like Python's (see `_score`).
* **Unclear names**: a best effort within the declaring function. A name is suggested only when
  that function declares it exactly once (so no block-level shadowing inside it), it is never
  used as an object shorthand (`{tmp}`, where renaming would change a key), and nested
  functions that declare the same name again are left out, as a whole. Property names
  (`obj.tmp`, `{tmp: 1}`) are different identifiers in the grammar and are never included.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from tree_sitter import Node

from contracts.docs import Language
from services.docs.findings import (
    MAX_COMMENTS,
    MAX_RENAMES,
    FileAnalysis,
    RenameCandidate,
    Symbol,
    SymbolKind,
    TrickyLine,
    file_doc_line,
    is_unclear_name,
)
from services.docs.languages import Grammar, parse_tree, walk
from services.docs.text import SourceText, Span

FUNCTION_LIKE = frozenset(
    {
        "function_declaration",
        "generator_function_declaration",
        "function_expression",
        "function",
        "generator_function",
        "arrow_function",
        "method_definition",
    }
)
CLASS_LIKE = frozenset({"class_declaration", "abstract_class_declaration", "class"})
FIELD_TYPES = frozenset({"public_field_definition", "field_definition"})
DECLARATIONS = frozenset({"lexical_declaration", "variable_declaration"})
FUNCTION_VALUES = frozenset(
    {"arrow_function", "function_expression", "function", "generator_function"}
)
NO_VALUE_TYPES = frozenset({"void", "never", "undefined", "Promise<void>"})
FILE_TAGS = ("@file", "@fileoverview", "@overview", "@module")


def analyze_js(language: Language, grammar: Grammar, content: str) -> FileAnalysis:
    source = _Source(SourceText(content), content.encode("utf-8"))
    root = parse_tree(grammar, content).root_node
    comments = _Comments.of(root, source)
    symbols = [symbol for node in walk(root) if (symbol := _symbol(node, source)) is not None]
    anchors = {symbol.doc_line for symbol in symbols}
    leading = _leading_comments(root)
    first = 1 if root.children and root.children[0].type == "hash_bang_line" else 0
    return FileAnalysis(
        language=language,
        grammar=grammar,
        symbols=symbols,
        style="jsdoc",
        has_file_doc=any(tag in source.of(c) for c in leading for tag in FILE_TAGS),
        file_doc_line=file_doc_line(source.text, first, comments.only.__contains__),
        has_code=_has_code(root),
        tricky_lines=_tricky_lines(root, source, comments, anchors),
        renames=_renames(root, source),
    )


@dataclass
class _Source:
    text: SourceText
    data: bytes

    def of(self, node: Node) -> str:
        return self.data[node.start_byte : node.end_byte].decode("utf-8", errors="replace")

    def start(self, node: Node) -> tuple[int, int]:
        """A node's start as (line, character column)."""
        row, column = node.start_point
        return row, self.text.char_column(row, column)

    def span(self, node: Node) -> Span:
        line, start = self.start(node)
        return Span(line, start, start + len(self.of(node)))


@dataclass
class _Comments:
    lines: set[int] = field(default_factory=set)  # lines where a comment starts or ends
    only: set[int] = field(default_factory=set)  # lines holding nothing but comment

    @classmethod
    def of(cls, root: Node, source: _Source) -> _Comments:
        found = cls()
        for node in walk(root):
            if node.type != "comment":
                continue
            (first, start), (last, end) = node.start_point, node.end_point
            found.lines.update((first, last))
            for row in range(first, last + 1):
                before = source.text.line_text(row).encode()[:start] if row == first else b""
                after = source.text.line_text(row).encode()[end:] if row == last else b""
                if not before.strip() and not after.strip():
                    found.only.add(row)
        return found


def _leading_comments(root: Node) -> list[Node]:
    leading = []
    for child in root.named_children:
        if child.type == "hash_bang_line":
            continue
        if child.type != "comment":
            break
        leading.append(child)
    return leading


def _has_code(root: Node) -> bool:
    return any(c.type not in ("comment", "hash_bang_line") for c in root.named_children)


# --- symbols ----------------------------------------------------------------------------------


def _symbol(node: Node, source: _Source) -> Symbol | None:
    """The symbol `node` declares, if it is one we document."""
    found = _declaration(node)
    if found is None:
        return None
    name_node, function, anchor, kind = found
    name = source.of(name_node)
    anchor_line, anchor_column = source.start(anchor)
    docstring = _jsdoc_above(anchor, source)
    params = _params(function) if function is not None else ()
    return_type = _return_type(function, source) if function is not None else None
    returns, yields = _returns_and_yields(function, name, source)
    return Symbol(
        name=name,
        qualname=".".join([*_enclosing_names(node, source), name]),
        kind=kind,
        params=tuple(source.of(p) for p in params),
        param_types=tuple(None for _ in params),
        returns_value=returns and return_type not in NO_VALUE_TYPES,
        yields=yields,
        return_type=return_type,
        start_line=anchor_line,
        end_line=node.end_point.row,
        doc_line=anchor_line,
        doc_indent=source.text.indent(anchor_line),
        docstring=docstring,
        documentable=source.text.starts_line(anchor_line, anchor_column),
    )


def _declaration(node: Node) -> tuple[Node, Node | None, Node, SymbolKind] | None:
    """(name, function node, anchor where JSDoc goes, kind) of a declaration we document."""
    parent = node.parent
    if node.type in ("function_declaration", "generator_function_declaration"):
        return _named(node, node, _exported(node), "function")
    if node.type in ("class_declaration", "abstract_class_declaration"):
        return _named(node, None, _exported(node), "class")
    if node.type == "interface_declaration":
        return _named(node, None, _exported(node), "interface")
    if parent is not None and parent.type == "class_body":
        if node.type == "method_definition":
            return _named(node, node, _decorated(node), "method")
        value = node.child_by_field_name("value")
        if node.type in FIELD_TYPES and value is not None and value.type in FUNCTION_VALUES:
            name = node.child_by_field_name("name") or node.child_by_field_name("property")
            if name is not None and name.type != "computed_property_name":
                return name, value, _decorated(node), "method"
        return None
    if node.type == "variable_declarator" and parent is not None and parent.type in DECLARATIONS:
        value = node.child_by_field_name("value")
        name = node.child_by_field_name("name")
        if value is None or value.type not in FUNCTION_VALUES or name is None:
            return None
        if name.type != "identifier" or parent.named_children[0].id != node.id:
            return None  # `const a = 1, f = () => 2`: no line of its own for f's JSDoc
        return name, value, _exported(parent), "function"
    return None


def _named(
    node: Node, function: Node | None, anchor: Node, kind: SymbolKind
) -> tuple[Node, Node | None, Node, SymbolKind] | None:
    name = node.child_by_field_name("name")
    if name is None or name.type == "computed_property_name":
        return None
    return name, function, anchor, kind


def _exported(node: Node) -> Node:
    parent = node.parent
    return parent if parent is not None and parent.type == "export_statement" else node


def _decorated(node: Node) -> Node:
    """A class member, or the first of the decorators right before it."""
    anchor = node
    previous = node.prev_named_sibling
    while previous is not None and previous.type == "decorator":
        anchor = previous
        previous = previous.prev_named_sibling
    return anchor


def _jsdoc_above(anchor: Node, source: _Source) -> str | None:
    previous = anchor.prev_named_sibling
    if previous is None or previous.type != "comment":
        return None
    text = source.of(previous)
    if text.startswith("/**") and previous.end_point.row >= anchor.start_point.row - 1:
        return text
    return None


def _enclosing_names(node: Node, source: _Source) -> list[str]:
    names: list[str] = []
    parent = node.parent
    while parent is not None:
        found = _declaration(parent)
        if found is not None and parent.id != node.id:
            names.append(source.of(found[0]))
        parent = parent.parent
    return list(reversed(names))


def _params(function: Node) -> list[Node]:
    """The identifiers of a function's named parameters (destructured ones have no name)."""
    single = function.child_by_field_name("parameter")  # `x => x + 1`
    if single is not None:
        return [single] if single.type == "identifier" else []
    parameters = function.child_by_field_name("parameters")
    if parameters is None:
        return []
    found = []
    for parameter in parameters.named_children:
        name = _parameter_identifier(parameter)
        if name is not None:
            found.append(name)
    return found


def _parameter_identifier(node: Node) -> Node | None:
    if node.type in ("required_parameter", "optional_parameter"):
        pattern = node.child_by_field_name("pattern")
        return _parameter_identifier(pattern) if pattern is not None else None
    if node.type == "identifier":
        return node
    if node.type == "assignment_pattern":
        left = node.child_by_field_name("left")
        return _parameter_identifier(left) if left is not None else None
    if node.type == "rest_pattern":
        inner = [child for child in node.named_children if child.type == "identifier"]
        return inner[0] if inner else None
    return None  # object and array patterns, `this`


def _return_type(function: Node, source: _Source) -> str | None:
    annotation = function.child_by_field_name("return_type")
    if annotation is None:
        return None
    return source.of(annotation).lstrip(":").strip()


def _returns_and_yields(function: Node | None, name: str, source: _Source) -> tuple[bool, bool]:
    if function is None:
        return False, False
    body = function.child_by_field_name("body")
    if body is None:
        return False, False
    if function.type == "arrow_function" and body.type != "statement_block":
        return True, False
    if name == "constructor" or any(c.type == "set" for c in function.children):
        return False, False
    returns = yields = False
    for node in _own_nodes(body):
        if node.type == "return_statement":
            returns = returns or any(c.type != "comment" for c in node.named_children)
        elif node.type == "yield_expression":
            yields = True
    return returns, yields


def _own_nodes(node: Node) -> Iterator[Node]:
    """Nodes under `node` that are not inside a nested function or class."""
    stack = list(reversed(node.children))
    while stack:
        current = stack.pop()
        yield current
        if current.type not in FUNCTION_LIKE and current.type not in CLASS_LIKE:
            stack.extend(reversed(current.children))


# --- tricky lines -----------------------------------------------------------------------------

STATEMENTS = frozenset(
    {
        "expression_statement",
        "lexical_declaration",
        "variable_declaration",
        "return_statement",
        "throw_statement",
        "if_statement",
        "for_statement",
        "for_in_statement",
        "while_statement",
        "do_statement",
        "switch_statement",
    }
)
# The parts of a compound statement that its first line holds.
HEADER_FIELDS = {
    "if_statement": ("condition",),
    "for_statement": ("initializer", "condition", "increment"),
    "for_in_statement": ("left", "right"),
    "while_statement": ("condition",),
    "do_statement": ("condition",),
    "switch_statement": ("value",),
}
BIT_OPERATORS = frozenset({"&", "|", "^", "<<", ">>", ">>>"})
BIT_ASSIGNMENTS = frozenset({"&=", "|=", "^=", "<<=", ">>=", ">>>="})
PLAIN_NUMBERS = frozenset({0, 1, 2, -1, 10, 100, 0.5})
LONG_LINE = 90
DENSE_OPERATORS = 4
MIN_SCORE = 3


def _tricky_lines(
    root: Node, source: _Source, comments: _Comments, anchors: set[int]
) -> list[TrickyLine]:
    found: list[TrickyLine] = []
    for statement in _statements_in_functions(root):
        line, column = source.start(statement)
        if line in anchors or line in comments.lines or line - 1 in comments.only:
            continue
        if not source.text.starts_line(line, column):
            continue
        score, reasons = _score(statement, source)
        if score >= MIN_SCORE:
            found.append(TrickyLine(line, source.text.indent(line), score, tuple(reasons)))
    best = sorted(found, key=lambda tricky: (-tricky.score, tricky.line))[:MAX_COMMENTS]
    return sorted(best, key=lambda tricky: tricky.line)


def _statements_in_functions(root: Node) -> Iterator[Node]:
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, in_function = stack.pop()
        if in_function and node.type in STATEMENTS:
            yield node
        inside = in_function or node.type in FUNCTION_LIKE
        stack.extend((child, inside) for child in reversed(node.named_children))


def _header(statement: Node) -> list[Node]:
    fields = HEADER_FIELDS.get(statement.type)
    if fields is None:
        return [statement]
    parts = [statement.child_by_field_name(name) for name in fields]
    return [part for part in parts if part is not None]


def _score(statement: Node, source: _Source) -> tuple[int, list[str]]:
    """Points, as for Python: regular expression 3, bit operation 3, conditional expression 2,
    calls nested or chained 3 deep 2, callback 1, magic number 1 each (at most 2), compound
    condition (`??`, `?.`, 3+ `&&`/`||`) 1, dense expression (4+ binary operators) 3, long
    line 1."""
    points: dict[str, int] = {}
    magic = operators = logical = 0
    for root in _header(statement):
        for node in _expression_nodes(root):
            kind = node.type
            operator = node.child_by_field_name("operator")
            symbol = operator.type if operator is not None else ""
            if kind == "regex":
                points["regular expression"] = 3
            elif _is_bit_operation(kind, symbol):
                points["bit operation"] = 3
            elif kind == "ternary_expression":
                points["conditional expression"] = 2
            elif kind in ("arrow_function", "function_expression"):
                points["callback"] = 1
            elif kind == "number" and _is_magic(source.of(node)):
                magic += 1
            elif kind == "optional_chain" or symbol == "??":
                points["compound condition"] = 1
            if kind == "binary_expression":
                operators += 1
                logical += symbol in ("&&", "||")
        if _call_depth(root) >= 3:
            points["nested calls"] = 2
    if magic:
        points["magic number"] = min(magic, 2)
    if logical >= 2:
        points["compound condition"] = 1
    if operators >= DENSE_OPERATORS:
        points["dense expression"] = 3
    if len(source.text.line_text(statement.start_point.row)) > LONG_LINE:
        points["long line"] = 1
    return sum(points.values()), sorted(points)


def _is_bit_operation(kind: str, operator: str) -> bool:
    if kind == "binary_expression":
        return operator in BIT_OPERATORS
    if kind == "augmented_assignment_expression":
        return operator in BIT_ASSIGNMENTS
    return kind == "unary_expression" and operator == "~"


def _expression_nodes(root: Node) -> Iterator[Node]:
    """Nodes of an expression, not entering statement blocks (a callback's body)."""
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        if node.type not in ("statement_block", "class_body"):
            stack.extend(node.children)


def _is_magic(literal: str) -> bool:
    text = literal.lower().removesuffix("n").replace("_", "")
    try:
        value: float = int(text, 0)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            return True
    return value not in PLAIN_NUMBERS


def _call_depth(root: Node) -> int:
    deepest = 0
    stack: list[tuple[Node, int]] = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        if node.type in ("call_expression", "new_expression"):
            depth += 1
            deepest = max(deepest, depth)
        if node.type in ("statement_block", "class_body"):
            continue
        stack.extend((child, depth) for child in node.children)
    return deepest


# --- renames ----------------------------------------------------------------------------------

NOT_REFERENCES = frozenset(
    {"jsx_opening_element", "jsx_closing_element", "jsx_self_closing_element"}
)
SHORTHANDS = frozenset({"shorthand_property_identifier", "shorthand_property_identifier_pattern"})


@dataclass(frozen=True)
class _Binding:
    node: Node  # the identifier that binds the name
    kind: str  # "parameter", "variable", "loop", "catch", "def"


def _renames(root: Node, source: _Source) -> list[RenameCandidate]:
    top_level = {source.of(b.node) for b in _top_level_bindings(root)}
    found: list[RenameCandidate] = []
    for function in walk(root):
        if function.type not in FUNCTION_LIKE:
            continue
        found.extend(_function_renames(function, source, top_level))
        if len(found) >= MAX_RENAMES:
            break
    found.sort(
        key=lambda candidate: (candidate.occurrences[0].line, candidate.occurrences[0].start)
    )
    return found[:MAX_RENAMES]


def _function_renames(
    function: Node, source: _Source, top_level: set[str]
) -> Iterator[RenameCandidate]:
    declared: dict[str, list[_Binding]] = {}
    for binding in _function_bindings(function):
        declared.setdefault(source.of(binding.node), []).append(binding)
    body = function.child_by_field_name("body")
    one_liner = function.type == "arrow_function" and (
        body is None or body.type != "statement_block"
    )
    taken: frozenset[str] | None = None
    for name, bindings in declared.items():
        if len(bindings) != 1 or bindings[0].node.type != "identifier":
            continue
        kind = bindings[0].kind
        if kind == "def" or (kind == "parameter" and one_liner):
            continue  # `(a, b) => a.price - b.price`: short names are the custom there
        # `e` is the custom for a caught error and for an event handler's parameter.
        exception = kind in ("catch", "parameter")
        unclear = is_unclear_name(name, loop_index=kind == "loop", exception=exception)
        if not unclear:
            continue
        spans = _occurrences(function, name, source)
        if spans is None:
            continue
        if taken is None:
            taken = frozenset(_identifiers(function, source) | top_level)
        yield RenameCandidate(
            name=name,
            role="parameter" if kind == "parameter" else "variable",
            function=_qualname(function, source),
            function_start=function.start_point.row,
            function_end=function.end_point.row,
            occurrences=tuple(spans),
            taken=taken,
        )


def _qualname(function: Node, source: _Source) -> str:
    """`Cart.add`, `parseQuery`, or `Cart.add.<anonymous>` for a callback."""
    names = _enclosing_names(function, source)
    own = _declaration(function)
    if own is not None:
        return ".".join([*names, source.of(own[0])])
    parent = function.parent
    holder = _declaration(parent) if parent is not None else None
    if holder is not None and holder[1] is not None and holder[1].id == function.id:
        return ".".join(names)  # `const f = () => ...`: the names end with f already
    return ".".join([*names, "<anonymous>"])


def _function_bindings(function: Node) -> list[_Binding]:
    """Names a function binds: its parameters and its declarations (not nested functions')."""
    found = [_Binding(node, "parameter") for node in _pattern_names(_parameters(function))]
    if function.type in ("function_expression", "function", "generator_function"):
        name = function.child_by_field_name("name")
        if name is not None:  # a named function expression sees its own name
            found.append(_Binding(name, "def"))
    body = function.child_by_field_name("body")
    if body is not None and body.type not in FUNCTION_LIKE and body.type not in CLASS_LIKE:
        found.extend(_block_bindings(body))  # not `x => y => ...`: the inner one is not ours
    return found


def _parameters(function: Node) -> list[Node]:
    single = function.child_by_field_name("parameter")
    if single is not None:
        return [single]
    parameters = function.child_by_field_name("parameters")
    return list(parameters.named_children) if parameters is not None else []


def _block_bindings(body: Node) -> Iterator[_Binding]:
    for node in _own_nodes(body):
        if node.type == "variable_declarator":
            name = node.child_by_field_name("name")
            in_for = (
                node.parent is not None
                and node.parent.parent is not None
                and (node.parent.parent.type == "for_statement")
            )
            for bound in _pattern_names([name] if name is not None else []):
                yield _Binding(bound, "loop" if in_for else "variable")
        elif node.type == "for_in_statement" and node.child_by_field_name("kind") is not None:
            left = node.child_by_field_name("left")
            for bound in _pattern_names([left] if left is not None else []):
                yield _Binding(bound, "loop")
        elif node.type == "catch_clause":
            parameter = node.child_by_field_name("parameter")
            for bound in _pattern_names([parameter] if parameter is not None else []):
                yield _Binding(bound, "catch")
        elif node.type in FUNCTION_LIKE or node.type in CLASS_LIKE:
            name = node.child_by_field_name("name")
            if name is not None and node.type not in ("function_expression", "function"):
                yield _Binding(name, "def")


def _pattern_names(patterns: list[Node]) -> list[Node]:
    """The identifiers a parameter list or destructuring pattern binds."""
    found: list[Node] = []
    stack = list(reversed(patterns))
    while stack:
        node = stack.pop()
        if node.type in ("identifier", "shorthand_property_identifier_pattern"):
            found.append(node)
        elif node.type in ("required_parameter", "optional_parameter"):
            pattern = node.child_by_field_name("pattern")
            stack.extend([pattern] if pattern is not None else [])
        elif node.type == "assignment_pattern":
            left = node.child_by_field_name("left")
            stack.extend([left] if left is not None else [])
        elif node.type == "pair_pattern":
            value = node.child_by_field_name("value")
            stack.extend([value] if value is not None else [])
        elif node.type == "object_assignment_pattern":
            left = node.child_by_field_name("left")
            stack.extend([left] if left is not None else [])
        elif node.type in ("object_pattern", "array_pattern", "rest_pattern"):
            stack.extend(reversed(node.named_children))
    return found


def _occurrences(function: Node, name: str, source: _Source) -> list[Span] | None:
    """Identifiers naming the function's own `name`; None when renaming it is not safe."""
    spans: list[Span] = []
    stack = [function]
    while stack:
        node = stack.pop()
        if node.type in SHORTHANDS and source.of(node) == name:
            return None
        if node.type == "identifier" and source.of(node) == name:
            parent = node.parent
            if parent is None or parent.type not in NOT_REFERENCES:
                spans.append(source.span(node))
        if node.id != function.id and _declares(node, name, source):
            continue  # shadowed there: none of its identifiers are ours
        stack.extend(node.children)
    for span in spans:
        if source.text.text_at(span) != name:
            return None
    return sorted(spans, key=lambda span: (span.line, span.start))


def _declares(node: Node, name: str, source: _Source) -> bool:
    """Whether `node` is a function that binds `name` itself."""
    if node.type not in FUNCTION_LIKE:
        return False
    return any(source.of(binding.node) == name for binding in _function_bindings(node))


def _identifiers(function: Node, source: _Source) -> set[str]:
    kinds = {"identifier", "shorthand_property_identifier", "shorthand_property_identifier_pattern"}
    return {source.of(node) for node in walk(function) if node.type in kinds}


def _top_level_bindings(root: Node) -> list[_Binding]:
    found: list[_Binding] = []
    for node in _own_nodes(root):
        if node.type in ("import_clause", "import_specifier", "namespace_import"):
            found.extend(_Binding(n, "def") for n in node.named_children if n.type == "identifier")
    found.extend(_block_bindings(root))
    return found
