"""From a snapshot of files to a validated `DesiredState`, collecting every problem.

Pure: the input is a list of `SourceFile` (path + bytes) from any source (a
directory, one Git commit's tree); nothing here touches the filesystem.
"""

from __future__ import annotations

import gc
import hashlib
import multiprocessing
import os
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from hecate_agent.errors import SpecProblem
from hecate_agent.spec.checks import Facts, check_cross_references, facts_of
from hecate_agent.spec.config import ConfigDocument, GlobalConfig
from hecate_agent.spec.messages import allowed_fields, friendly_message
from hecate_agent.spec.models import (
    DOCUMENT_MODELS,
    AuthPolicyDocument,
    RouteDocument,
)
from hecate_agent.spec.requirements import (
    config_requirements,
    deprecated_spellings,
    policy_requirements,
    requirement_warning,
)
from hecate_agent.spec.streams import StreamDocument
from hecate_agent.spec.yamlio import (
    DEFAULT_LIMITS,
    Document,
    ParsedFile,
    Path,
    ReadLimits,
    format_field,
    parse_yaml,
)

CONFIG_FILES = ("config.yaml", "config.yml")
KINDS = tuple(DOCUMENT_MODELS)

T = TypeVar("T", RouteDocument, AuthPolicyDocument, StreamDocument)


@dataclass(frozen=True)
class SourceFile:
    """One spec file of a snapshot.

    `path` is relative to the specs root (POSIX separators) and decides what the
    file is (`config.yaml` at the root is the global config); `shown` is how
    problems name it, e.g. with the directory the user typed in front.
    """

    path: str
    data: bytes
    shown: str = ""

    @property
    def display(self) -> str:
        return self.shown or self.path


@dataclass(frozen=True)
class Located(Generic[T]):
    """A validated document and where it came from."""

    doc: T
    file: str
    index: int

    @property
    def name(self) -> str:
        return self.doc.metadata.name


@dataclass(frozen=True)
class DesiredState:
    """Everything a revision asks for, validated and in a stable order (by name)."""

    routes: tuple[Located[RouteDocument], ...]
    auth_policies: tuple[Located[AuthPolicyDocument], ...]
    streams: tuple[Located[StreamDocument], ...]
    config: GlobalConfig
    config_file: str | None = None

    def counts(self) -> dict[str, int]:
        return {
            "Route": len(self.routes),
            "AuthPolicy": len(self.auth_policies),
            "Stream": len(self.streams),
            "Config": 1 if self.config_file else 0,
        }


@dataclass
class LoadResult:
    state: DesiredState | None
    problems: list[SpecProblem]  # errors only: the state is None when there is one
    counts: dict[str, int] = field(default_factory=dict)
    warnings: list[SpecProblem] = field(default_factory=list)  # severity "warning"; they do not block


def snapshot_digest(files: Sequence[SourceFile]) -> str:
    """Content hash of a snapshot: the revision of a directory source (12 hex digits)."""
    digest = hashlib.sha256()
    for source in sorted(files, key=lambda f: f.path):
        digest.update(source.path.encode() + b"\0" + len(source.data).to_bytes(8, "big") + source.data)
    return digest.hexdigest()[:12]


class Locator:
    """Finds line/column for a path inside a document, re-reading the file with positions on demand."""

    def __init__(self, files: dict[str, bytes], limits: ReadLimits) -> None:
        self._files = files
        self._limits = limits
        self._parsed: dict[str, ParsedFile] = {}

    def document(self, file: str, index: int) -> Document | None:
        parsed = self._parsed.get(file)
        if parsed is None:
            parsed = parse_yaml(file, self._files[file], self._limits, with_positions=True)
            self._parsed[file] = parsed
        return parsed.documents[index] if index < len(parsed.documents) else None

    def position(self, file: str, index: int, path: Path, *, key: bool = False) -> tuple[int, int]:
        doc = self.document(file, index)
        if doc is None:
            return (1, 1)
        return doc.position_of(path, key=key)


class ParseCache:
    """Validated documents per file content: a daemon re-reading a big repository after a one-file
    change parses and validates one file, not all of them."""

    def __init__(self) -> None:
        self._files: dict[tuple[str, bytes], tuple[list[Located[Any]], list[SpecProblem]]] = {}
        self._facts: dict[int, tuple[Located[Any], Facts]] = {}  # by id(); the document is held so the id stays its

    def facts_of(self, document: Located[Any]) -> Facts:
        found = self._facts.get(id(document))
        if found is None or found[0] is not document:
            found = (document, facts_of(document))
            self._facts[id(document)] = found
        return found[1]

    def get(self, source: SourceFile) -> tuple[list[Located[Any]], list[SpecProblem]] | None:
        return self._files.get((source.display, hashlib.sha1(source.data).digest()))

    def put(self, source: SourceFile, outcome: tuple[list[Located[Any]], list[SpecProblem]]) -> None:
        self._files[(source.display, hashlib.sha1(source.data).digest())] = outcome

    def retain(self, files: Sequence[SourceFile]) -> None:
        """Forget files that are no longer in the snapshot (bounded memory)."""
        keep = {(f.display, hashlib.sha1(f.data).digest()) for f in files}
        self._files = {k: v for k, v in self._files.items() if k in keep}
        alive = {id(d) for documents, _ in self._files.values() for d in documents}
        self._facts = {k: v for k, v in self._facts.items() if k in alive}


def load_specs(
    files: Sequence[SourceFile],
    limits: ReadLimits = DEFAULT_LIMITS,
    cache: ParseCache | None = None,
    *,
    workers: int = 1,
) -> LoadResult:
    """Parse and validate a whole snapshot into a `DesiredState`; never raises on bad input.

    `workers` > 1 parses big snapshots in forked processes (one-shot commands only: a process
    with threads, such as the daemon, must not fork)."""
    locator = Locator({f.display: f.data for f in files}, limits)
    config, config_file, problems = _load_config(files, limits, locator)
    specs = [f for f in files if f.path not in CONFIG_FILES]
    documents, more = validate_documents(specs, limits, locator, cache, workers=workers)
    problems += more
    facts = [cache.facts_of(d) for d in documents] if cache is not None else [facts_of(d) for d in documents]
    problems += check_cross_references(facts, config, locator)
    counts = count_kinds(facts, config_file)
    warnings = sorted({p for p in problems if not p.is_error})
    problems = [p for p in problems if p.is_error]
    if problems:
        return LoadResult(None, sorted(set(problems)), counts, warnings)

    def of_kind(kind: type[T]) -> tuple[Located[T], ...]:
        return tuple(sorted((d for d in documents if isinstance(d.doc, kind)), key=lambda d: d.name))

    state = DesiredState(
        routes=of_kind(RouteDocument),
        auth_policies=of_kind(AuthPolicyDocument),
        streams=of_kind(StreamDocument),
        config=config,
        config_file=config_file,
    )
    return LoadResult(state, [], counts, warnings)


def check_snapshot(
    files: Sequence[SourceFile], limits: ReadLimits = DEFAULT_LIMITS, *, workers: int | None = None
) -> tuple[list[SpecProblem], dict[str, int]]:
    """Only the verdict of `load_specs` (errors and warnings, sorted, and counts), spread over processes for
    big snapshots. Tell them apart by `SpecProblem.is_error`.

    Parsing dominates a cold validate and is CPU-bound Python, so `validate`
    of a 10,000-file repository uses every core. Workers send back only
    problems and the small `Facts` the cross-file checks need, never models.
    """
    verdict = check_snapshot_parts(files, limits, workers=workers)
    return sorted(set(verdict.file_problems + verdict.cross_problems)), verdict.counts


@dataclass
class Verdict:
    """What `check_snapshot` finds, split by cause: `file_problems` each come from one file on its own;
    `cross_problems` from comparing files (a name or domain used twice, an AuthPolicy or config.yaml
    setting a route relies on, a port taken twice), so a change to any file may cause them."""

    file_problems: list[SpecProblem]
    cross_problems: list[SpecProblem]
    counts: dict[str, int]


def check_snapshot_parts(
    files: Sequence[SourceFile], limits: ReadLimits = DEFAULT_LIMITS, *, workers: int | None = None
) -> Verdict:
    """`check_snapshot`, with the problems split into per-file and cross-file ones."""
    workers = workers if workers is not None else min(os.cpu_count() or 1, 4)
    specs = [f for f in files if f.path not in CONFIG_FILES]
    locator = Locator({f.display: f.data for f in files}, limits)
    config, config_file, problems = _load_config(files, limits, locator)
    if workers < 2 or len(specs) < PARALLEL_THRESHOLD:
        documents, more = validate_documents(specs, limits, locator)
        facts = [facts_of(d) for d in documents]
        problems += more
    else:
        global _FORKED_SNAPSHOT  # noqa: PLW0603  (read by the forked children instead of pickling 10k files)
        _FORKED_SNAPSHOT = specs
        try:
            context = multiprocessing.get_context("fork")  # children inherit the imported modules: no start-up
            with context.Pool(workers) as pool:
                outcomes = pool.starmap(_check_share, [(share, workers, limits) for share in range(workers)])
        finally:
            _FORKED_SNAPSHOT = []
        facts = [fact for share_facts, _ in outcomes for fact in share_facts]
        for _, share_problems in outcomes:
            problems += share_problems
    cross = check_cross_references(facts, config, locator)
    return Verdict(problems, cross, count_kinds(facts, config_file))


PARALLEL_THRESHOLD = 1000
_FORKED_SNAPSHOT: Sequence[SourceFile] = []


def _parse_in_children(
    files: Sequence[SourceFile], limits: ReadLimits, workers: int
) -> Generator[ParsedFile, None, None] | None:
    """`parse_yaml` of every file, in order, parsed by `workers` forked processes (parsing dominates
    loading; the plain values come back pickled, far cheaper than parsing) in chunks, so the caller
    validates one chunk while the next ones are parsed; None when not worth it."""
    if workers < 2 or len(files) < PARALLEL_THRESHOLD:
        return None
    return _parsed_chunks(files, limits, workers)


PARSE_CHUNK = 250


def _parsed_chunks(files: Sequence[SourceFile], limits: ReadLimits, workers: int) -> Generator[ParsedFile, None, None]:
    global _FORKED_SNAPSHOT  # noqa: PLW0603  (read by the forked children instead of pickling the files)
    _FORKED_SNAPSHOT = files
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            starts = range(0, len(files), PARSE_CHUNK)
            for chunk in pool.imap(_parse_chunk, [(start, limits) for start in starts]):
                yield from chunk
    finally:
        _FORKED_SNAPSHOT = []


def _parse_chunk(task: tuple[int, ReadLimits]) -> list[ParsedFile]:
    start, limits = task
    gc.disable()  # plain values, no reference cycles
    return [parse_yaml(f.display, f.data, limits) for f in _FORKED_SNAPSHOT[start : start + PARSE_CHUNK]]


def _check_share(share: int, shares: int, limits: ReadLimits) -> tuple[list[Facts], list[SpecProblem]]:
    """Validate every `shares`-th file of the forked snapshot, starting at `share`."""
    files = _FORKED_SNAPSHOT[share::shares]
    locator = Locator({f.display: f.data for f in files}, limits)
    # Spec values hold no reference cycles; the cycle collector would only rescan a growing heap.
    gc.disable()
    documents, problems = validate_documents(files, limits, locator)
    return [facts_of(d) for d in documents], problems


def count_kinds(facts: Sequence[Facts], config_file: str | None) -> dict[str, int]:
    counts = {kind: 0 for kind in KINDS}
    for fact in facts:
        counts[fact.kind] += 1
    counts["Config"] = 1 if config_file else 0
    return counts


def validate_documents(
    files: Sequence[SourceFile],
    limits: ReadLimits,
    locator: Locator,
    cache: ParseCache | None = None,
    *,
    workers: int = 1,
) -> tuple[list[Located[Any]], list[SpecProblem]]:
    """Parse and validate each spec file (not config.yaml) on its own."""
    documents: list[Located[Any]] = []
    problems: list[SpecProblem] = []
    ordered = sorted(files, key=lambda f: f.path)
    parsed_ahead = _parse_in_children(ordered, limits, workers) if cache is None else None
    try:
        for source in ordered:
            cached = cache.get(source) if cache is not None else None
            if cached is None:
                file_documents: list[Located[Any]] = []
                file_problems: list[SpecProblem] = []
                parsed = next(parsed_ahead) if parsed_ahead else parse_yaml(source.display, source.data, limits)
                file_problems.extend(parsed.problems)
                for doc in parsed.documents:
                    if doc.value is None:
                        continue  # an empty document, e.g. after a trailing '---'
                    located = _validate_document(source.display, doc, locator, file_problems)
                    if located is not None:
                        file_documents.append(located)
                cached = (file_documents, file_problems)
                if cache is not None:
                    cache.put(source, cached)
            documents.extend(cached[0])
            problems.extend(cached[1])
    finally:
        if parsed_ahead is not None:
            parsed_ahead.close()  # the worker pool ends with it
    return documents, problems


def _load_config(
    files: Sequence[SourceFile], limits: ReadLimits, locator: Locator
) -> tuple[GlobalConfig, str | None, list[SpecProblem]]:
    """The root config.yaml (defaults when there is none)."""
    problems: list[SpecProblem] = []
    config, config_file = GlobalConfig(), None
    for source in sorted(files, key=lambda f: f.path):
        if source.path not in CONFIG_FILES:
            continue
        parsed = parse_yaml(source.display, source.data, limits)
        problems.extend(parsed.problems)
        for doc in parsed.documents:
            if doc.value is None:
                continue
            loaded = _validate_config(source.display, doc, locator, problems)
            if loaded is None:
                continue
            if config_file is not None:
                problems.append(
                    SpecProblem(
                        source.display,
                        doc.line,
                        1,
                        "more than one global config (config.yaml / config.yml, or several documents); "
                        "keep a single 'global:' document",
                        kind="Config",
                    )
                )
            config, config_file = loaded, source.display
    return config, config_file, problems


def _document_identity(value: dict[str, Any]) -> tuple[str, str]:
    kind = value.get("kind")
    metadata = value.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return (kind if isinstance(kind, str) else "", name if isinstance(name, str) else "")


def _validate_document(file: str, doc: Document, locator: Locator, problems: list[SpecProblem]) -> Located[Any] | None:
    if not isinstance(doc.value, dict):
        problems.append(
            SpecProblem(
                file,
                doc.line,
                1,
                "a spec document must be a mapping with apiVersion, kind, metadata and spec",
            )
        )
        return None
    kind, name = _document_identity(doc.value)
    model = DOCUMENT_MODELS.get(kind)
    if model is None:
        line, column = locator.position(file, doc.index, ("kind",), key="kind" not in doc.value)
        got = "is missing" if "kind" not in doc.value else f"is {doc.value['kind']!r}"
        problems.append(
            SpecProblem(
                file,
                line,
                column,
                f"'kind' {got}; expected one of {', '.join(KINDS)}"
                + (" (the global config belongs in config.yaml at the root)" if "global" in doc.value else ""),
                kind=kind,
                name=name,
                field="kind",
            )
        )
        return None
    try:
        located: Located[Any] = Located(model.model_validate(doc.value), file, doc.index)
    except ValidationError as exc:
        problems.extend(_problems_from(exc, model=model, file=file, doc=doc, locator=locator, kind=kind, name=name))
        return None
    found = deprecated_spellings(kind, doc.value)
    if isinstance(located.doc, AuthPolicyDocument):
        found += [(r.path, requirement_warning(r)) for r in policy_requirements(located.doc.spec)]
    problems.extend(_warnings(found, file, doc, locator, kind=kind, name=name))
    return located


def _warnings(
    found: list[tuple[Path, str]], file: str, doc: Document, locator: Locator, *, kind: str, name: str
) -> list[SpecProblem]:
    out = []
    for path, message in found:
        line, column = locator.position(file, doc.index, path)
        out.append(
            SpecProblem(file, line, column, message, kind=kind, name=name, field=format_field(path), severity="warning")
        )
    return out


def _validate_config(file: str, doc: Document, locator: Locator, problems: list[SpecProblem]) -> GlobalConfig | None:
    if not isinstance(doc.value, dict):
        problems.append(
            SpecProblem(file, doc.line, 1, "config.yaml must be a mapping with a 'global' key", kind="Config")
        )
        return None
    try:
        config = ConfigDocument.model_validate(doc.value).global_
    except ValidationError as exc:
        problems.extend(
            _problems_from(exc, model=ConfigDocument, file=file, doc=doc, locator=locator, kind="Config", name="")
        )
        return None
    found = deprecated_spellings("Config", doc.value)
    found += [(r.path, requirement_warning(r)) for r in config_requirements(config)]
    problems.extend(_warnings(found, file, doc, locator, kind="Config", name=""))
    return config


def _problems_from(
    exc: ValidationError,
    *,
    model: type[BaseModel],
    file: str,
    doc: Document,
    locator: Locator,
    kind: str,
    name: str,
) -> list[SpecProblem]:
    found = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        on_key = error["type"] in ("extra_forbidden", "missing")
        if loc and loc[-1] == "[key]":
            loc, on_key = loc[:-1], True
        path: Path = tuple(p for p in loc if isinstance(p, str | int))
        allowed = allowed_fields(model, path[:-1]) if error["type"] == "extra_forbidden" else None
        line, column = locator.position(file, doc.index, path, key=on_key)
        found.append(
            SpecProblem(
                file,
                line,
                column,
                friendly_message(error, allowed),
                kind=kind,
                name=name,
                field=format_field(path),
            )
        )
    return found
