"""Checks every route's input gets before its own validation: text the database can store.

PostgreSQL cannot store NUL characters in `text` nor in `jsonb` (nor `\\u0000` escapes), and
refuses unpaired UTF-16 surrogates and non-finite numbers (NaN, Infinity: not JSON, though
Python's parser reads them) in `jsonb`. Left to the database, each is a 500 after the work has
begun; here they are a 422 VALIDATION_ERROR naming the field, for every route at once (it is an
app-wide dependency), including routes added later.

Checked: path and (declared) query parameters, JSON bodies (every string, key and number, at
any depth) and the text fields of forms. FastAPI reads and parses the body before it runs
dependencies, so this walks the parsed value the route will validate: nothing is read twice.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from fastapi import params
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.requests import HTTPConnection, Request

# Enough for a client to fix its input; a body full of NULs does not deserve a list of them all.
MAX_REPORTED = 20
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def text_problem(value: str) -> str | None:
    """Why the database could not store this string, or None."""
    if "\x00" in value:
        return "must not contain NUL (\\u0000) characters"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "must be valid Unicode (no unpaired surrogates)"
    return None


def json_problems(
    value: Any, location: tuple[str | int, ...]
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(location, problem) for every unstorable string, key or number in a parsed JSON value.
    Iterative: nesting as deep as the JSON parser allows cannot exhaust the stack here."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, location)]
    while stack:
        item, loc = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                yield loc, problem
        elif isinstance(item, float):
            if not math.isfinite(item):
                yield loc, "must be a finite number"
        elif isinstance(item, dict):
            for key, child in item.items():
                key_problem = text_problem(key) if isinstance(key, str) else None
                if key_problem:
                    yield loc, f"keys {key_problem}"
                stack.append((child, (*loc, key)))
        elif isinstance(item, list):
            stack.extend((child, (*loc, index)) for index, child in enumerate(item))


_declared_query: dict[int, frozenset[str]] = {}


def declared_query_names(route: object) -> frozenset[str]:
    """The query parameters a route reads (others never reach it, so are not checked)."""
    if not isinstance(route, APIRoute):
        return frozenset()
    names = _declared_query.get(id(route))
    if names is None:
        found: set[str] = set()
        pending = [route.dependant]
        while pending:
            dependant = pending.pop()
            found.update(param.alias for param in dependant.query_params)
            pending.extend(dependant.dependencies)
        names = frozenset(found)
        _declared_query[id(route)] = names
    return names


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def _body_problems(request: Request) -> list[tuple[tuple[str | int, ...], str]]:
    route = request.scope.get("route")
    body_field = getattr(route, "body_field", None)
    if body_field is None:
        return []  # the route reads no body: nothing of it reaches the database
    media_type = _media_type(request)
    if isinstance(body_field.field_info, params.Form):
        if media_type not in _FORM_TYPES:
            return []  # FastAPI read no form: the route's validation refuses the body
        form = await request.form()  # parsed already, with the route's limits (cached)
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for name, field in form.multi_items():
            problem = text_problem(name)
            if problem is None and isinstance(field, str):
                problem = text_problem(field)
            if problem:
                problems.append((("body", name), problem))
        return problems
    maintype, _, subtype = media_type.partition("/")
    if maintype == "application" and (subtype == "json" or subtype.endswith("+json")):
        # FastAPI's own condition for parsing JSON: parsed already, and cached by the request.
        return list(json_problems(await request.json(), ("body",)))
    return []


async def reject_unstorable_text(connection: HTTPConnection) -> None:
    """An app-wide dependency: 422 for input that PostgreSQL could not store."""
    if not isinstance(connection, Request):
        return  # WebSockets: their only inputs are a token and a number
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for name, value in connection.path_params.items():
        problem = text_problem(str(value))
        if problem:
            problems.append((("path", name), problem))
    declared = declared_query_names(connection.scope.get("route"))
    for name, value in connection.query_params.multi_items():
        problem = text_problem(value) if name in declared else None
        if problem:
            problems.append((("query", name), problem))
    problems.extend(await _body_problems(connection))
    if problems:
        raise RequestValidationError(
            [
                {"type": "string_unstorable", "loc": loc, "msg": problem}
                for loc, problem in problems[:MAX_REPORTED]
            ]
        )
