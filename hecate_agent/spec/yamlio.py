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
from dataclasses import dataclass, field
from typing import Any

from _ruamel_yaml import CParser
from ruamel.yaml.error import MarkedYAMLError, YAMLError
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
from ruamel.yaml.reader import ReaderError

from hecate_agent.errors import SpecProblem
from hecate_agent.spec.yamlcore import KEYWORDS, MAX_INTEGER, SURELY_STR, IntegerTooLargeError, resolve_plain

DEFAULT_MAX_FILE_BYTES = 1024 * 1024
DEFAULT_ALIAS_NODE_BUDGET = 100_000
DEFAULT_MAX_DEPTH = 64

Path = tuple[str | int, ...]
Position = tuple[int, int]

_CORE = "tag:yaml.org,2002:"


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
        # In code points, like every other column (SARIF columnKind); what precedes the bad byte decodes.
        column = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", errors="replace")) + 1
        return None, SpecProblem(
            path,
            line,
            column,
            f"file is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); save it as UTF-8",
        )
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:
        line, column = _offset_position(text, text.index("\x00"))
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
    except ReaderError as exc:
        line, column = _offset_position(text, exc.position)
        result.problems.append(
            SpecProblem(path, line, column, f"character {exc.character!r} is not allowed in YAML; remove it")
        )
    except YAMLError as exc:  # any other refusal by the parser, unpositioned
        result.problems.append(SpecProblem(path, 1, 1, f"YAML error: {str(exc).splitlines()[0]}"))
    return result


def size_problem(path: str, size: int, limit: int) -> SpecProblem:
    return SpecProblem(
        path,
        0,
        0,
        f"file is {size:,} bytes, over the {limit:,}-byte limit for one spec file; split it into several files",
    )


def _syntax_problem(path: str, exc: MarkedYAMLError, text: str) -> SpecProblem:
    mark = exc.problem_mark or exc.context_mark
    line, column = _within_text(text, mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
    problem = (exc.problem or "invalid YAML").strip()
    context = (exc.context or "").strip()
    message = f"YAML syntax error: {problem}"
    if context:
        message += f" ({context})"
    if mark is not None and "\t" in _line_of(text, mark.line)[: mark.column + 1]:
        message += "; indent with spaces, YAML does not allow tabs"
    return SpecProblem(path, line, column, message)


def _offset_position(text: str, offset: int) -> Position:
    line = text.count("\n", 0, offset) + 1
    return _within_text(text, line, offset - (text.rfind("\n", 0, offset) + 1) + 1)


def _within_text(text: str, line: int, column: int) -> Position:
    """A position the file has: the parser puts "unexpected end of file" one line past the last one
    (after the final newline), which editors and SARIF consumers cannot show; that is the end of the last line."""
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    if line <= len(lines):
        return line, column
    if not lines:
        return 1, 1
    return len(lines), len(lines[-1].rstrip("\r")) + 1


def _line_of(text: str, index: int) -> str:
    lines = text.splitlines()
    return lines[index] if 0 <= index < len(lines) else ""


def _scalar(event: ScalarEvent, position: Position) -> Any:
    try:
        return _scalar_value(event, position)
    except IntegerTooLargeError:
        raise _ReadError(
            f"integer of {len(event.value):,} characters is too large: no field takes integers beyond "
            f"{MAX_INTEGER:,} (2^63-1); if it is meant as text, put it in quotes",
            position,
        ) from None


def _scalar_value(event: ScalarEvent, position: Position) -> Any:
    value: str = event.value
    tag = event.tag
    plain = event.style in ("", None) and event.implicit[0]
    if tag is None or tag == "!":
        if not plain:
            return value
        return resolve_plain(value)
    if not tag.startswith(_CORE):
        raise _ReadError(
            f"unsupported YAML tag {tag!r}; specs use plain values (strings, numbers, booleans)",
            position,
        )
    short = tag[len(_CORE) :]
    if short == "str":
        return value
    resolved = resolve_plain(value)
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


def _at(mark: Any) -> Position:
    return (mark.line + 1, mark.column + 1)


class _Frame:
    """A collection under construction. Marks are kept raw: positions are only computed when needed."""

    __slots__ = (
        "anchor",
        "container",
        "is_map",
        "key",
        "key_mark",
        "key_marks",
        "merged",
        "nodes_at_start",
        "path",
        "start_mark",
    )

    def __init__(self, container: Any, path: Path, anchor: str | None, nodes_at_start: int, mark: Any) -> None:
        self.container = container
        self.is_map = type(container) is dict
        self.path = path
        self.key: Any = _NO_KEY
        self.key_mark = mark
        self.anchor = anchor
        self.nodes_at_start = nodes_at_start
        self.start_mark = mark
        self.merged: set[Any] = set()  # keys copied by '<<', which an explicit key may override
        self.key_marks: dict[Any, Any] = {}

    def child_path(self) -> Path:
        if self.is_map:
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
        """Build one document; returns once its root node is complete.

        The hot loop: every spec byte passes through here, so the common case
        (a plain string scalar) is handled inline and paths are only tracked
        when positions were asked for.
        """
        get_event = self.parser.get_event
        anchors: dict[str, tuple[Any, int]] = {}
        stack: list[_Frame] = []
        top: _Frame | None = None
        max_depth = self.limits.max_depth
        track = positions is not None
        surely_str = SURELY_STR.match
        path: Path = ()
        while True:
            event = get_event()
            cls = type(event)
            if cls is ScalarEvent:
                self.nodes += 1
                raw = event.value
                if event.tag is None and event.style == "" and surely_str(raw) and raw not in KEYWORDS:
                    value: Any = raw
                elif event.tag is None and event.style != "":
                    value = raw
                else:
                    value = _scalar(event, _at(event.start_mark))
                mark = event.start_mark
                if top is not None and top.is_map and top.key is _NO_KEY:
                    self._take_key(top, value, mark)
                    continue
                if event.anchor is not None:
                    anchors[event.anchor] = (value, 1)
                if track:
                    path = top.child_path() if top is not None else ()
            elif cls is MappingEndEvent or cls is SequenceEndEvent:
                frame = stack.pop()
                top = stack[-1] if stack else None
                value = frame.container
                if frame.anchor is not None:
                    anchors[frame.anchor] = (value, self.nodes - frame.nodes_at_start + 1)
                mark = frame.start_mark
                path = frame.path
            elif cls is MappingStartEvent or cls is SequenceStartEvent:
                mark = event.start_mark
                if top is not None and top.is_map and top.key is _NO_KEY:
                    raise _ReadError("complex mapping keys are not supported; keys must be plain strings", _at(mark))
                if len(stack) >= max_depth:
                    raise _ReadError(f"nesting deeper than {max_depth} levels; specs are never this deep", _at(mark))
                if event.tag is not None and event.tag not in _COLLECTION_TAGS:
                    raise _ReadError(f"unsupported YAML tag {event.tag!r}; specs use plain values", _at(mark))
                self.nodes += 1
                container: Any = {} if cls is MappingStartEvent else []
                if track:
                    path = top.child_path() if top is not None else ()
                top = _Frame(container, path, event.anchor, self.nodes, mark)
                stack.append(top)
                continue
            elif cls is AliasEvent:
                mark = event.start_mark
                value = self._expand_alias(event.anchor, anchors, _at(mark))
                if top is not None and top.is_map and top.key is _NO_KEY:
                    raise _ReadError("an alias cannot be a mapping key", _at(mark))
                if track:
                    path = top.child_path() if top is not None else ()
            else:  # DocumentEndEvent and friends carry nothing we need
                continue

            if positions is not None:
                key_mark = top.key_mark if top is not None and top.is_map else mark
                positions[path] = (_at(key_mark), _at(mark))
            if top is None:
                get_event()  # the DocumentEndEvent
                return value
            container = top.container
            if not top.is_map:
                container.append(value)
                continue
            key = top.key
            top.key = _NO_KEY
            if key == "<<":
                _merge(top, value, mark)
                continue
            container[key] = value
            top.key_marks[key] = top.key_mark
            if top.merged:
                top.merged.discard(key)

    def _expand_alias(self, anchor: str, anchors: dict[str, tuple[Any, int]], start: Position) -> Any:
        if anchor not in anchors:
            raise _ReadError(
                f"alias *{anchor} refers to an unknown or unfinished anchor (recursive aliases are not allowed)",
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
    def _take_key(frame: _Frame, key: Any, mark: Any) -> None:
        if isinstance(key, float) and math.isnan(key):
            raise _ReadError("'.nan' cannot be a mapping key", _at(mark))
        if key in frame.container and key not in frame.merged:
            line, column = _at(frame.key_marks[key])
            raise _ReadError(
                f"duplicate key {key!r}: it is already set at line {line}, column {column} "
                "of this mapping; remove one of the two",
                _at(mark),
            )
        frame.key = key
        frame.key_mark = mark


def _merge(frame: _Frame, value: Any, mark: Any) -> None:
    """YAML merge key: copy the keys the mapping does not set itself."""
    sources = value if isinstance(value, list) else [value]
    for source in sources:
        if not isinstance(source, dict):
            raise _ReadError("a merge key ('<<') needs a mapping or a list of mappings", _at(mark))
        for key, item in source.items():
            if key not in frame.container:
                frame.container[key] = item
                frame.merged.add(key)
                frame.key_marks[key] = mark


class _NoKey:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<no key>"


_NO_KEY: Any = _NoKey()
_COLLECTION_TAGS = frozenset({"!", _CORE + "map", _CORE + "seq"})
