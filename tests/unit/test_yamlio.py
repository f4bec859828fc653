"""The YAML reader: YAML 1.2 core values, refusals with positions, and the safety limits."""

from __future__ import annotations

import math
import time

import pytest

from hecate_agent.spec.yamlio import DEFAULT_LIMITS, ReadLimits, parse_yaml


def values(text: str) -> list[object]:
    parsed = parse_yaml("f.yaml", text.encode())
    assert parsed.problems == []
    return [doc.value for doc in parsed.documents]


def only_problem(text: str | bytes, limits: ReadLimits = DEFAULT_LIMITS) -> tuple[int, int, str]:
    data = text.encode() if isinstance(text, str) else text
    parsed = parse_yaml("f.yaml", data, limits)
    assert len(parsed.problems) == 1, parsed.problems
    problem = parsed.problems[0]
    assert problem.file == "f.yaml"
    return problem.line, problem.column, problem.message


def test_core_schema_scalars() -> None:
    [doc] = values(
        "s: hello\nq: '1.2'\ni: 42\nneg: -7\nhex: 0x1F\noct: 0o17\nf: 1.5\ninf: .inf\nnan: .nan\n"
        "t: true\nn: null\ntilde: ~\nempty:\ndate: 2024-01-01\nyes: yes\nzero: 010\n"
    )
    assert isinstance(doc, dict)
    assert doc["s"] == "hello" and doc["q"] == "1.2" and doc["i"] == 42 and doc["neg"] == -7
    assert doc["hex"] == 31 and doc["oct"] == 15 and doc["f"] == 1.5 and doc["inf"] == math.inf
    assert math.isnan(doc["nan"])
    assert doc["t"] is True and doc["n"] is None and doc["tilde"] is None and doc["empty"] is None
    # YAML 1.2: no timestamps, no yes/no booleans, no implicit octal
    assert doc["date"] == "2024-01-01" and doc["yes"] == "yes" and doc["zero"] == 10


def test_quoted_and_block_scalars_stay_strings() -> None:
    [doc] = values('a: "true"\nb: |\n  line\nc: >\n  folded\nd: !!str 12\ne: !!int "12"\n')
    assert doc == {"a": "true", "b": "line\n", "c": "folded\n", "d": "12", "e": 12}


def test_multiple_documents_and_their_lines() -> None:
    parsed = parse_yaml("f.yaml", b"a: 1\n---\nb: 2\n---\n")
    assert [d.value for d in parsed.documents] == [{"a": 1}, {"b": 2}, None]
    assert [d.line for d in parsed.documents] == [1, 2, 4]


def test_duplicate_key_names_both_positions() -> None:
    line, column, message = only_problem("spec:\n  domain: a\n  port: 1\n  domain: b\n")
    assert (line, column) == (4, 3)
    assert "duplicate key 'domain'" in message and "line 2, column 3" in message


def test_merge_keys_and_overrides() -> None:
    [doc] = values("base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\n")
    assert doc == {"base": {"x": 1, "y": 2}, "use": {"x": 1, "y": 3}}


def test_billion_laughs_fails_fast() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    started = time.perf_counter()
    line, _, message = only_problem("\n".join(lines) + "\n")
    assert time.perf_counter() - started < 1.0
    assert "aliases expand to more than 100,000 nodes" in message
    assert line == 6  # the first alias that crosses the budget


def test_recursive_and_unknown_aliases() -> None:
    assert "unknown or unfinished anchor" in only_problem("a: &a [*a]\n")[2]
    assert "unknown or unfinished anchor" in only_problem("a: *nope\n")[2]


def test_depth_limit() -> None:
    line, column, message = only_problem("[" * 100 + "]" * 100, ReadLimits(max_depth=64))
    assert (line, column) == (1, 65) and "nesting deeper than 64" in message


def test_tags_are_not_executed_or_interpreted() -> None:
    line, column, message = only_problem("x: !!python/object/apply:os.system [echo hi]\n")
    assert (line, column) == (1, 4) and "unsupported YAML tag" in message
    assert "unsupported YAML tag '!custom'" in only_problem("x: !custom 1\n")[2]
    assert "is not a valid !!int" in only_problem("x: !!int abc\n")[2]


def test_syntax_errors_are_positioned() -> None:
    line, column, message = only_problem("a: [1, 2\nb: 3\n")
    assert line == 2 and message.startswith("YAML syntax error")
    line, column, message = only_problem("a:\n\tb: 1\n")
    assert (line, column) == (2, 1) and "tabs" in message


def test_complex_keys_refused() -> None:
    assert "complex mapping keys" in only_problem("? [a, b]\n: 1\n")[2]


def test_encoding_problems() -> None:
    line, column, message = only_problem(b"a: 1\nb: caf\xe9\n")
    assert (line, column) == (2, 7) and "not valid UTF-8" in message
    assert "NUL byte" in only_problem(b"a: 1\x00\n")[2]
    assert values("\ufeffa: 1\n") == [{"a": 1}]  # a BOM is fine


def test_size_limit() -> None:
    line, column, message = only_problem(b"a: 1\n" * 100, ReadLimits(max_file_bytes=100))
    assert (line, column) == (0, 0) and "over the 100-byte limit" in message


def test_positions_of_keys_and_values() -> None:
    parsed = parse_yaml("f.yaml", b"spec:\n  upstreams:\n    - dial: a:1\n      weight: 0\n", with_positions=True)
    doc = parsed.documents[0]
    assert doc.position_of(("spec", "upstreams", 0, "weight")) == (4, 15)
    assert doc.position_of(("spec", "upstreams", 0, "weight"), key=True) == (4, 7)
    # a path that does not exist falls back to its nearest ancestor's key
    assert doc.position_of(("spec", "upstreams", 0, "missing")) == (3, 7)


def test_integers_beyond_64_bits_are_refused_where_they_are_read() -> None:
    """Python refuses str<->int conversions beyond 4,300 digits (raising, not converting): such an
    integer, decimal, hex, octal, tagged or as a key, is a positioned problem, never a traceback."""
    huge = "9" * 5000
    for text in (f"w: {huge}\n", f"w: -{huge}\n", f"w: 0x{'f' * 5000}\n", f"w: 0o{'7' * 5000}\n",
                 f"w: !!int {huge}\n", f"{huge}: x\n", "w: 9223372036854775808\n", "w: 0x8000000000000000\n"):
        line, column, message = only_problem(text)
        assert (line, column) == (1, 1 if text.startswith("9") else 4), text[:20]
        assert "too large" in message and "put it in quotes" in message and huge not in message
    [doc] = values("a: 9223372036854775807\nb: -9223372036854775807\nc: 0x7fffffffffffffff\nd: 000000000000000000000042\n")
    assert doc == {"a": 2**63 - 1, "b": -(2**63 - 1), "c": 2**63 - 1, "d": 42}


@pytest.mark.parametrize(
    "text",
    [
        "a: [1, 2\n",
        "a: [1, 2",
        "a: {b: 1\n\n",
        "a: 'unclosed\n",
        "a: 1\r\nb: [x, y\r\n",
        "a: \"x\n  y\n",
        "- [",
    ],
)
def test_a_syntax_error_at_the_end_is_on_the_last_line(text: str) -> None:
    """The parser marks "unexpected end" one line past the last; SARIF and editors need a line the file has."""
    problems = parse_yaml("f.yaml", text.encode()).problems
    assert len(problems) == 1 and "YAML syntax error" in problems[0].message
    lines = text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")
    assert 1 <= problems[0].line <= len(lines), problems[0]
    assert 1 <= problems[0].column <= len(lines[problems[0].line - 1]) + 1, problems[0]


def test_a_bad_utf8_byte_is_positioned_in_code_points() -> None:
    line, column, message = only_problem("a: 1\nb: '\u00e9\U0001f600".encode() + b"\xff'\n")
    assert (line, column) == (2, 7) and "not valid UTF-8" in message  # bytes would say 11
