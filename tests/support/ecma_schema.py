"""JSON Schema validation as editors and AJV 8 do it: `pattern` is an ECMA-262 regex in `u` mode.

The `jsonschema` package evaluates `pattern` with Python's `re`, which differs from ECMA-262 where it
matters here: Python's `$` also matches before a final newline, and its `\\d`/`\\s` are other sets.
The `regress` package is Rust's implementation of ECMA-262 regular expressions.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import regress
from jsonschema.exceptions import ValidationError


@functools.lru_cache(maxsize=256)
def ecma_regex(pattern: str) -> regress.Regex:
    """Compile like AJV 8 (`new RegExp(pattern, "u")`); raises regress.RegressError when ECMA-262 refuses it."""
    return regress.Regex(pattern, "u")


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    del validator, schema
    if isinstance(instance, str) and ecma_regex(pattern).find(instance) is None:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


EcmaValidator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": _pattern})


def ecma_validator(schema_file: Path) -> Any:
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    return EcmaValidator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def patterns_of(node: Any) -> Iterator[str]:
    """Every `pattern` in a schema, at any depth."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                yield value
            else:
                yield from patterns_of(value)
    elif isinstance(node, list):
        for item in node:
            yield from patterns_of(item)
