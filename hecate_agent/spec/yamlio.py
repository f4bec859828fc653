"""Reading YAML spec files safely and fast, with positions on demand.

The fast path drives ruamel.yaml's C event parser (`ruamel.yaml.clib`) and
builds plain Python values with a small event-driven constructor. ruamel's own
constructors cost about 1 ms per small document even with the C parser (the
resolver and constructor are pure Python); this one costs a fraction of that,
and it enforces our safety rules while it builds:

- duplicate keys are refused, naming both positions;
- alias expansion is charged against a node budget, so a "billion laughs"
  file fails while it is being read, long before anything walks it;
- nesting deeper than `max_depth` is refused (no recursion anywhere);
- only the YAML 1.2 core schema is resolved: timestamps stay strings, and
  tags other than the core ones are refused rather than interpreted.

Positions (`line`, `column`, 1-based) of every key and value are recorded only
when asked for, i.e. when a file already has a problem to report.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from _ruamel_yaml import CParser
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)

from hecate_agent.errors import SpecProblem

DEFAULT_MAX_FILE_BYTES = 1024 * 1024
DEFAULT_ALIAS_NODE_BUDGET = 100_000
DEFAULT_MAX_DEPTH = 64

Path = tuple[str | int, ...]
Position = tuple[int, int]

_CORE = "tag:yaml.org,2002:"
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_TRUES = frozenset({"true", "True", "TRUE"})
_FALSES = frozenset({"false", "False", "FALSE"})
_INT_DEC = re.compile(r"[-+]?[0-9]+\Z")
_INT_OCT = re.compile(r"0o[0-7]+\Z")
_INT_HEX = re.compile(r"0x[0-9a-fA-F]+\Z")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?\Z")
_INF = re.compile(r"[-+]?\.(?:inf|Inf|INF)\Z")
_NAN = re.compile(r"\.(?:nan|NaN|NAN)\Z")
# A plain scalar that can only be a string: starts with a letter and is not one
# of the keywords above. Checked first because it is by far the common case.
_SURELY_STR = re.compile(r"[A-Za-z_/][^\s]*\Z")


@dataclass(frozen=True)
class ReadLimits:
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    alias_node_budget: int = DEFAULT_ALIAS_NODE_BUDGET
    max_depth: int = DEFAULT_MAX_DEPTH


DEFAULT_LIMITS = ReadLimits()


@dataclass
class Document:
    """One YAML document of a file: its value and where it starts."""

    index: int
    value: Any
    line: int
    positions: dict[Path, tuple[Position, Position]] | None = None

    def position_of(self, path: Path, *, key: bool = False) -> Position:
        """Best position for `path`: the value (or key) itself, else its nearest ancestor."""
        if not self.positions:
            return (self.line, 1)
        probe = tuple(path)
        while probe:
            found = self.positions.get(probe)
            if found is not None:
                return found[0] if key else found[1]
            probe = probe[:-1]
            key = True  # an ancestor is best shown by its key
        return self.positions.get((), ((self.line, 1), (self.line, 1)))[1]


@dataclass
class ParsedFile:
    path: str
    documents: list[Document] = field(default_factory=list)
    problems: list[SpecProblem] = field(default_factory=list)


def format_field(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class _ReadError(Exception):
    def __init__(self, message: str, position: Position) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


def decode_utf8(path: str, data: bytes) -> tuple[str | None, SpecProblem | None]:
    """Strictly decode UTF-8 (a leading BOM is dropped); position the first bad byte."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        return None, SpecProblem(
            path,
            line,
            column,
            f"file is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); save it as UTF-8",
        )
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:
        offset = text.index("\x00")
        line = text.count("\n", 0, offset) + 1
        column = offset - (text.rfind("\n", 0, offset) + 1) + 1
        return None, SpecProblem(path, line, column, "file contains a NUL byte; specs are text files")
    return text, None


def parse_yaml(
    path: str, data: bytes, limits: ReadLimits = DEFAULT_LIMITS, *, with_positions: bool = False
) -> ParsedFile:
    """Parse every document of one file. Never raises on bad input: problems are returned."""
    result = ParsedFile(path)
    if len(data) > limits.max_file_bytes:
        result.problems.append(size_problem(path, len(data), limits.max_file_bytes))
        return result
    text, problem = decode_utf8(path, data)
    if problem is not None or text is None:
        result.problems.append(problem or SpecProblem(path, 0, 0, "unreadable file"))
        return result
    try:
        result.documents = _Builder(text, limits, with_positions).documents()
    except _ReadError as exc:
        result.problems.append(SpecProblem(path, exc.position[0], exc.position[1], exc.message))
    except MarkedYAMLError as exc:
        result.problems.append(_syntax_problem(path, exc, text))
    return result


def size_problem(path: str, size: int, limit: int) -> SpecProblem:
    return SpecProblem(
        path,
        0,
        0,
        f"file is {size:,} bytes, over the {limit:,}-byte limit for one spec file; "
        "split it into several files",
    )


def _syntax_problem(path: str, exc: MarkedYAMLError, text: str) -> SpecProblem:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
    problem = (exc.problem or "invalid YAML").strip()
    context = (exc.context or "").strip()
    message = f"YAML syntax error: {problem}"
    if context:
        message += f" ({context})"
    if mark is not None and "\t" in _line_of(text, mark.line)[: mark.column + 1]:
        message += "; indent with spaces, YAML does not allow tabs"
    return SpecProblem(path, line, column, message)


def _line_of(text: str, index: int) -> str:
    lines = text.splitlines()
    return lines[index] if 0 <= index < len(lines) else ""


def _scalar(event: ScalarEvent, position: Position) -> Any:
    value: str = event.value
    tag = event.tag
    plain = event.style in ("", None) and event.implicit[0]
    if tag is None or tag == "!":
        if not plain:
            return value
        return _resolve_plain(value)
    if not tag.startswith(_CORE):
        raise _ReadError(
            f"unsupported YAML tag {tag!r}; specs use plain values (strings, numbers, booleans)",
            position,
        )
    short = tag[len(_CORE) :]
    if short == "str":
        return value
    resolved = _resolve_plain(value)
    expected: dict[str, type | tuple[type, ...]] = {
        "int": int,
        "float": (float, int),
        "bool": bool,
        "null": type(None),
    }
    wanted = expected.get(short)
    if wanted is None:
        raise _ReadError(f"unsupported YAML tag '!!{short}'; specs use plain values", position)
    if (isinstance(resolved, bool) and short != "bool") or not isinstance(resolved, wanted):
        raise _ReadError(f"value {value!r} is not a valid !!{short}", position)
    return float(resolved) if short == "float" and isinstance(resolved, int | float) else resolved


def _resolve_plain(value: str) -> Any:
    """YAML 1.2 core schema resolution of a plain scalar."""
    if _SURELY_STR.match(value) and value not in _TRUES and value not in _FALSES and value not in _NULLS:
        return value
    if value in _NULLS:
        return None
    if value in _TRUES:
        return True
    if value in _FALSES:
        return False
    if _INT_DEC.match(value):
        return int(value)
    if _INT_OCT.match(value):
        return int(value[2:], 8)
    if _INT_HEX.match(value):
        return int(value[2:], 16)
    if _FLOAT.match(value):
        return float(value)
    if _INF.match(value):
        return -math.inf if value.startswith("-") else math.inf
    if _NAN.match(value):
        return math.nan
    return value


class _Frame:
    """A collection under construction."""

    __slots__ = (
        "anchor",
        "container",
        "key",
        "key_position",
        "key_positions",
        "merged",
        "nodes_at_start",
        "path",
        "start",
    )

    def __init__(
        self, container: Any, path: Path, anchor: str | None, nodes_at_start: int, start: Position
    ) -> None:
        self.container = container
        self.path = path
        self.key: Any = _NO_KEY
        self.key_position = start
        self.anchor = anchor
        self.nodes_at_start = nodes_at_start
        self.start = start
        self.merged: set[Any] = set()  # keys copied by '<<', which an explicit key may override
        self.key_positions: dict[Any, Position] = {}

    def expects_key(self) -> bool:
        return type(self.container) is dict and self.key is _NO_KEY

    def child_path(self) -> Path:
        if type(self.container) is dict:
            return (*self.path, self.key)
        return (*self.path, len(self.container))


class _Builder:
    """Turns the C parser's event stream into plain values (see module docstring)."""

    def __init__(self, text: str, limits: ReadLimits, with_positions: bool) -> None:
        self.parser = CParser(text)
        self.limits = limits
        self.with_positions = with_positions
        self.nodes = 0
        self.alias_nodes = 0

    def documents(self) -> list[Document]:
        docs: list[Document] = []
        get_event = self.parser.get_event
        while True:
            event = get_event()
            cls = type(event)
            if cls is StreamEndEvent:
                return docs
            if cls is DocumentStartEvent:
                line = event.start_mark.line + 1
                positions: dict[Path, tuple[Position, Position]] | None = {} if self.with_positions else None
                value = self._document(positions)
                docs.append(Document(len(docs), value, line, positions))

    def _document(self, positions: dict[Path, tuple[Position, Position]] | None) -> Any:
        """Build one document; returns once its root node is complete."""
        get_event = self.parser.get_event
        anchors: dict[str, tuple[Any, int]] = {}
        stack: list[_Frame] = []
        max_depth = self.limits.max_depth
        while True:
            event = get_event()
            cls = type(event)
            if cls is ScalarEvent:
                start = (event.start_mark.line + 1, event.start_mark.column + 1)
                self.nodes += 1
                value = _scalar(event, start)
                if stack and stack[-1].expects_key():
                    self._take_key(stack[-1], value, start)
                    continue
                if event.anchor is not None:
                    anchors[event.anchor] = (value, 1)
                path = stack[-1].child_path() if stack else ()
            elif cls is MappingEndEvent or cls is SequenceEndEvent:
                frame = stack.pop()
                value = frame.container
                if frame.anchor is not None:
                    anchors[frame.anchor] = (value, self.nodes - frame.nodes_at_start + 1)
                start = frame.start
                path = frame.path
            elif cls is MappingStartEvent or cls is SequenceStartEvent:
                start = (event.start_mark.line + 1, event.start_mark.column + 1)
                if stack and stack[-1].expects_key():
                    raise _ReadError(
                        "complex mapping keys are not supported; keys must be plain strings", start
                    )
                if len(stack) >= max_depth:
                    raise _ReadError(
                        f"nesting deeper than {max_depth} levels; specs are never this deep", start
                    )
                if event.tag is not None and event.tag not in _COLLECTION_TAGS:
                    raise _ReadError(f"unsupported YAML tag {event.tag!r}; specs use plain values", start)
                self.nodes += 1
                container: Any = {} if cls is MappingStartEvent else []
                path = stack[-1].child_path() if stack else ()
                stack.append(_Frame(container, path, event.anchor, self.nodes, start))
                continue
            elif cls is AliasEvent:
                start = (event.start_mark.line + 1, event.start_mark.column + 1)
                value = self._expand_alias(event.anchor, anchors, start)
                if stack and stack[-1].expects_key():
                    raise _ReadError("an alias cannot be a mapping key", start)
                path = stack[-1].child_path() if stack else ()
            else:  # DocumentEndEvent and friends carry nothing we need
                continue

            if positions is not None:
                key_position = (
                    stack[-1].key_position if stack and type(stack[-1].container) is dict else start
                )
                positions[path] = (key_position, start)
            if not stack:
                get_event()  # the DocumentEndEvent
                return value
            self._add(stack[-1], value, start)

    def _expand_alias(self, anchor: str, anchors: dict[str, tuple[Any, int]], start: Position) -> Any:
        if anchor not in anchors:
            raise _ReadError(
                f"alias *{anchor} refers to an unknown or unfinished anchor "
                "(recursive aliases are not allowed)",
                start,
            )
        value, size = anchors[anchor]
        # Charged to both counters so an anchor that holds aliases weighs what it expands to.
        self.nodes += size
        self.alias_nodes += size
        if self.alias_nodes > self.limits.alias_node_budget:
            raise _ReadError(
                f"aliases expand to more than {self.limits.alias_node_budget:,} nodes "
                "(a 'billion laughs' pattern?); write the values out or use fewer aliases",
                start,
            )
        return value

    @staticmethod
    def _take_key(frame: _Frame, key: Any, position: Position) -> None:
        if isinstance(key, float) and math.isnan(key):
            raise _ReadError("'.nan' cannot be a mapping key", position)
        if key in frame.container and key not in frame.merged:
            line, column = frame.key_positions[key]
            raise _ReadError(
                f"duplicate key {key!r}: it is already set at line {line}, column {column} "
                "of this mapping; remove one of the two",
                position,
            )
        frame.key = key
        frame.key_position = position

    @staticmethod
    def _add(frame: _Frame, value: Any, position: Position) -> None:
        container = frame.container
        if type(container) is list:
            container.append(value)
            return
        key = frame.key
        frame.key = _NO_KEY
        if key == "<<":
            _merge(frame, value, position)
            return
        container[key] = value
        frame.key_positions[key] = frame.key_position
        frame.merged.discard(key)


def _merge(frame: _Frame, value: Any, position: Position) -> None:
    """YAML merge key: copy the keys the mapping does not set itself."""
    sources = value if isinstance(value, list) else [value]
    for source in sources:
        if not isinstance(source, dict):
            raise _ReadError("a merge key ('<<') needs a mapping or a list of mappings", position)
        for key, item in source.items():
            if key not in frame.container:
                frame.container[key] = item
                frame.merged.add(key)
                frame.key_positions[key] = position


class _NoKey:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<no key>"


_NO_KEY: Any = _NoKey()
_COLLECTION_TAGS = frozenset({"!", _CORE + "map", _CORE + "seq"})
