"""Reading model answers: lenient with chatter and word salad, strict about what is unusable."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.docs import GenerationTask, TaskKind
from services.docs.reading import UnusableOutput, read_answer


def task(kind: TaskKind, **context: Any) -> GenerationTask:
    context.setdefault("language", "python")
    return GenerationTask(task_id="t", kind=kind, messages=[], max_tokens=48, context=context)


DOCSTRING = task(TaskKind.DOCSTRING, name="parse_line", params=["line", "sep"], returns=True)
COMMENT = task(TaskKind.COMMENT)
SUMMARY = task(TaskKind.SUMMARY)
JS_COMMENT = task(TaskKind.COMMENT, language="typescript")


def rename(
    old: str = "tmp", language: str = "python", taken: tuple[str, ...] = ()
) -> GenerationTask:
    return task(TaskKind.RENAME, old_name=old, language=language, taken=list(taken))


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Parses a line into a dict.", "Parses a line into a dict."),
        ("ertion handleoun the valu flag", "Ertion handleoun the valu flag."),
        ("Sure! Here is the docstring: parses a line.", "Parses a line."),
        ("Certainly.\n\nThis function parses a line. It is fast.", "Parses a line."),
        ("The function `parse_line` splits the text.", "Splits the text."),
        ("`parse_line` splits the text", "Splits the text."),
        ('"Parses a line."', "Parses a line."),
        ("```\nParses a line.\n```", "Parses a line."),
        ('"""Parses a line."""', "Parses a line."),
        ("This function is used to parse a line", "Parse a line."),
        ("Docstring: Returns the stock's value.", "Returns the stock's value."),
    ],
)
def test_docstring_answers_are_cleaned(answer: str, expected: str) -> None:
    assert read_answer(DOCSTRING, answer) == expected


def test_docstring_parameter_lines_are_kept() -> None:
    answer = (
        "Splits a line into pairs.\n"
        "Args:\n"
        "    line: the text to split\n"
        "    sep (str): the separator\n"
        "    other: not a parameter, so it reads as prose\n"
        "Returns: the pairs found"
    )
    lines = read_answer(DOCSTRING, answer).split("\n")
    assert lines == [
        "Splits a line into pairs.",
        "line: The text to split.",
        "sep: The separator.",
        "@returns: The pairs found.",
    ]


def test_a_long_answer_is_cut_to_its_first_sentence_or_a_cap() -> None:
    assert read_answer(COMMENT, "Adds one. Then it does many other things.") == "Adds one."
    long = read_answer(COMMENT, "word " * 100)
    assert len(long) <= 121
    assert long.endswith(".")
    summary = read_answer(SUMMARY, "Loads data. Checks it. Saves it. Then more. And more.")
    assert summary == "Loads data. Checks it. Saves it."


def test_python_text_cannot_close_a_docstring() -> None:
    text = read_answer(DOCSTRING, 'Returns """quoted""" text and a path C:\\temp\\')
    assert '"""' not in text
    assert not text.endswith("\\")
    assert "C:\\temp" in text


def test_javascript_text_cannot_close_a_block_comment() -> None:
    text = read_answer(JS_COMMENT, "Ends the comment */ early")
    assert "*/" not in text


def test_comments_are_one_line_without_invisible_characters() -> None:
    text = read_answer(COMMENT, "Adds\u2028one\r\nto\tthe\u200b count\x07 and bidi\u202e")
    assert text == "Adds one to the count and bidi."


def test_backticks_and_unicode_survive() -> None:
    text = read_answer(COMMENT, "Normalises `naïve` names — keeps ünïcode.")
    assert text == "Normalises `naïve` names — keeps ünïcode."


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "   \n\t ",
        "...!!! ???",
        "-- ** --",
        "\x00\x01\x02binary\x00",
        "\ufffd\ufffd\ufffd\ufffd garbage \ufffd\ufffd\ufffd",
        "```python\ndef parse_line(line):\n    return dict(x.split('=') for x in line)\n```",
        "const out = {};",
        "return {a: b[c] || d(e)};",
    ],
)
def test_unusable_prose(answer: str) -> None:
    with pytest.raises(UnusableOutput):
        read_answer(DOCSTRING, answer)


def test_unusable_output_has_a_reason() -> None:
    with pytest.raises(UnusableOutput) as raised:
        read_answer(COMMENT, "")
    assert raised.value.reason == "the answer is empty"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("total_count", "total_count"),
        ("totalCount", "total_count"),
        ("TotalCount - sums the prices", "total_count - Sums the prices."),
        ("Sure! The new name is `line_total`.", "line_total"),
        ("Rename `tmp` to `subtotal` because it is clearer", "subtotal"),
        ("tmp -> running_sum", "running_sum"),
        ("price list", "price_list"),
        ("ertion handleoun the valu flag", "ertion"),
        ("New name: subtotal", "subtotal"),
    ],
)
def test_python_renames(answer: str, expected: str) -> None:
    result = read_answer(rename(), answer)
    name, _, reason = result.partition(" - ")
    assert name == expected.partition(" - ")[0]
    assert reason  # always some reason
    if " - " in expected:
        assert reason == expected.partition(" - ")[2]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [("total_count", "totalCount"), ("TotalCount", "totalCount"), ("MAX_ITEMS", "maxItems")],
)
def test_javascript_renames_are_camel_case(answer: str, expected: str) -> None:
    result = read_answer(rename(language="typescript"), answer)
    assert result.partition(" - ")[0] == expected


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "!!!",
        "\x00\x00\x00",
        "class",  # a keyword
        "list",  # a builtin
        "tmp",  # the same name
        "tmp - it is fine",
        "x",  # no clearer
        "data",  # no clearer
        "count",  # already used in the scope
        "ünïcode",  # not ASCII
    ],
)
def test_unusable_python_renames(answer: str) -> None:
    with pytest.raises(UnusableOutput):
        read_answer(rename(taken=("count", "tmp")), answer)


def test_unusable_javascript_renames() -> None:
    for answer in ("function", "undefined", "console"):
        with pytest.raises(UnusableOutput):
            read_answer(rename(language="javascript"), answer)
