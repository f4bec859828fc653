"""Property tests: whatever the input, loading returns problems (our own type), never an exception.

The default profile is quick; `HYPOTHESIS_PROFILE=slow` runs 10,000 examples per test.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from hecate_agent.errors import SpecProblem
from hecate_agent.spec.loader import SourceFile, load_specs
from hecate_agent.spec.yamlio import parse_yaml
from tests.helpers import auth_policy, config, dump_yaml, route, stream

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["hecate.io/v1", "Route", "Stream", "AuthPolicy", "10.0.0.1:80", "30s", "1.2", "tcp",
                     "mailcow", "compression", "rate-limit:5/second", "${X}", "{env.X}", "*.a.example"]),
)
structures = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)
YAML_PIECES = ["a: ", "- ", "  ", "\n", ": ", "&x ", "*x", "<<: ", "!!int ", "!t ", "---\n", "{", "}", "[",
               "]", ",", "'", '"', "|\n", ">\n", "#", "\t", "? ", "%YAML 1.2\n", "kind: Route\n", "\\", "@"]
yaml_ish = st.lists(st.one_of(st.sampled_from(YAML_PIECES), st.text(max_size=8)), max_size=40).map("".join)


def assert_only_problems(files: list[SourceFile]) -> None:
    result = load_specs(files)
    assert all(isinstance(p, SpecProblem) for p in result.problems)
    assert (result.state is None) == bool(result.problems)
    for problem in result.problems:
        assert problem.message and problem.line >= 0 and problem.column >= 0


@given(st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    assert_only_problems([SourceFile("routes/x.yaml", data), SourceFile("config.yaml", data)])


@given(yaml_ish)
def test_yaml_shaped_text(text: str) -> None:
    assert_only_problems([SourceFile("routes/x.yaml", text.encode()), SourceFile("config.yaml", text.encode())])
    parsed = parse_yaml("x.yaml", text.encode(), with_positions=True)
    assert all(isinstance(p, SpecProblem) for p in parsed.problems)


@given(structures)
def test_random_structures(value: Any) -> None:
    data = dump_yaml(value).encode()
    assert_only_problems([SourceFile("routes/x.yaml", data), SourceFile("config.yaml", data)])


BASES = [route(), auth_policy(), stream(), stream(port=None, preset="wazuh", upstreams=[{"server": "w"}]),
         config(), route(healthCheck={"path": "/h"}, canary={"upstream": "c:1", "percentage": 5})]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


@given(st.sampled_from(BASES), st.data())
def test_mutated_valid_documents(base: dict[str, Any], data: st.DataObject) -> None:
    doc = copy.deepcopy(base)
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        path = data.draw(st.sampled_from(_paths(doc)[1:]))
        parent: Any = doc
        for part in path[:-1]:
            parent = parent[part]
        parent[path[-1]] = data.draw(structures)
    name = "config.yaml" if "global" in doc else "x.yaml"
    assert_only_problems([SourceFile(name, dump_yaml(doc).encode())])
