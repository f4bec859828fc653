"""The published JSON Schemas and the agent give the same verdict on every single-file rule.

For generated documents of each kind, valid and mutated (wrong types, out-of-range numbers, strings
with surrounding whitespace, non-ASCII digits, other case or stray characters, unknown fields,
missing fields), the schema in `schemas/` (read as editors and AJV 8 read it: ECMA-262 patterns)
accepts a document exactly when the agent does.

Cross-file rules (unique names and domains, AuthPolicy references, listener conflicts, a route's
effective timeout with the global defaults) are the agent's alone: the agent's verdict here is its
per-file validation, which never runs them. The single-file rules JSON Schema cannot state are listed
in README.md ("Rules the schemas cannot express") and in `EXCLUDED` below; an example the agent
refuses only for one of them is discarded, never counted as agreement.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from hecate_agent.errors import SpecProblem
from hecate_agent.spec.headers import GROUP_NAME_PATTERN
from hecate_agent.spec.loader import Locator, SourceFile, load_specs, validate_documents
from hecate_agent.spec.yamlio import DEFAULT_LIMITS, parse_yaml
from tests.helpers import ROOT, SCHEMAS, dump_yaml
from tests.support.ecma_schema import ecma_validator

KINDS = ("Route", "AuthPolicy", "Stream", "Config")
SCHEMA_FILE = {"Route": "route", "AuthPolicy": "authpolicy", "Stream": "stream", "Config": "config"}

# Single-file rules JSON Schema cannot state: (README name, what the agent says when one is broken).
EXCLUDED: list[tuple[str, re.Pattern[str]]] = [
    ("a probe timeout shorter than its interval", re.compile(r"must be shorter than interval")),
    (
        "a route's domain is a host name",
        re.compile(
            r"not a valid internationalised domain name|is an IP address; a route's domain|"
            r"a wildcard needs at least two labels|is longer than 253 characters|is not a valid host name: label"
        ),
    ),
    (
        "durations within what the proxies hold",
        re.compile(r"is longer than [0-9dhms]+, the (longest duration Caddy can hold|most .* can be)"),
    ),
    (
        "a header is named once per rule, in any case",
        re.compile(r"are one header \(header names are case-insensitive\)|is also set in this rule|is already listed"),
    ),
]

@cache
def validator(kind: str) -> Any:
    return ecma_validator(SCHEMAS / f"{SCHEMA_FILE[kind]}.schema.json")


def agent_verdict(kind: str, text: str) -> tuple[Any, list[SpecProblem]] | None:
    """(the document as the agent read it, its per-file problems); None when the YAML itself is refused."""
    name = "config.yaml" if kind == "Config" else "spec.yaml"
    parsed = parse_yaml(name, text.encode())
    if parsed.problems or len(parsed.documents) != 1:
        return None
    source = SourceFile(name, text.encode())
    if kind == "Config":
        # The global config alone: no other document, so no cross-file rule has anything to check.
        problems = load_specs([source]).problems
    else:
        _, problems = validate_documents([source], DEFAULT_LIMITS, Locator({name: source.data}, DEFAULT_LIMITS))
    # Warnings (deprecated spellings, what only Authentik enforces) do not refuse a document.
    return parsed.documents[0].value, [p for p in problems if p.is_error]


def field_of(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def check_agreement(kind: str, doc: dict[str, Any]) -> str:
    """Assert both verdicts are the same ("both accept" / "both refuse"), or say why this document is not
    compared ("yaml", "excluded") without asserting anything."""
    verdict = agent_verdict(kind, dump_yaml(doc))
    if verdict is None:
        return "yaml"  # YAML-level refusals are the reader's, not a schema's business
    value, problems = verdict
    errors = list(validator(kind).iter_errors(value))
    if not errors and problems and all(any(rx.search(p.message) for _, rx in EXCLUDED) for p in problems):
        return "excluded"  # refused only by a rule the schema cannot state (README)
    assert bool(errors) == bool(problems), (
        f"schema {'refuses' if errors else 'accepts'}, agent {'refuses' if problems else 'accepts'}\n"
        f"document: {value!r}\nschema: {[(field_of(e.absolute_path), e.message) for e in errors]}\n"
        f"agent: {[(p.field, p.message) for p in problems]}"
    )
    return "both refuse" if errors else "both accept"


# --- valid documents ------------------------------------------------------------------------------

label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
names = label
domains = st.builds(
    lambda wildcard, labels, tld: ("*." if wildcard else "") + ".".join([*labels, tld]),
    st.booleans(),
    st.lists(label, min_size=1, max_size=3),
    st.from_regex(r"[a-z]{2,6}", fullmatch=True),
)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).filter(lambda a: a.ipv4_mapped is None).map(str)
# A host name's last label is not a number (resolvers would read `1.2.3.4.5` as a broken IPv4 address).
host_names = st.builds(lambda labels, last: ".".join([*labels, last]), st.lists(label, max_size=2),
                       st.from_regex(r"[a-z]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True))
hosts = st.one_of(host_names, ipv4, ipv6.map(lambda a: f"[{a}]"))
ports = st.integers(1, 65535)
dials = st.builds(lambda host, port: f"{host}:{port}", hosts, ports)
# Text the proxies never interpret: anything but control characters and braces (tab is allowed).
plain_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="{}\x7f", min_codepoint=0x09).filter(
        lambda c: c == "\t" or ord(c) >= 0x20
    ),
    max_size=12,
)
nonblank_text = plain_text.filter(lambda t: t.strip() != "")
header_names = st.one_of(st.from_regex(r"X-T[A-Za-z0-9-]{0,8}", fullmatch=True),
                         st.sampled_from(["X-Request-ID", "x-request-id", "X-Authentik-Username", "Cache-Control"]))
label_keys = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9._/-]{0,10}[A-Za-z0-9])?", fullmatch=True)
env_names = st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True)
references = st.one_of(
    env_names.map(lambda n: "${" + n + "}"),
    st.builds(lambda p, k: "${vault:" + p + "#" + k + "}", st.from_regex(r"[a-z]{1,5}(/[a-z]{1,5}){0,2}", fullmatch=True),
              st.from_regex(r"[a-z_]{1,6}", fullmatch=True)),
)


def duration_text(milliseconds: int) -> st.SearchStrategy[str]:
    """Ways of writing one duration: canonical (`1m30s`), in seconds, or in milliseconds."""
    from hecate_agent.spec.types import Duration

    forms = [str(Duration(milliseconds)), f"{milliseconds}ms"]
    if milliseconds % 1000 == 0:
        forms.append(f"{milliseconds // 1000}s")
    return st.sampled_from(forms)


def durations(low: int = 0, high: int = 3 * 86_400_000) -> st.SearchStrategy[str]:
    return st.integers(low, high).flatmap(duration_text)


@st.composite
def probe(draw: st.DrawFn, *, required: bool) -> dict[str, Any]:
    """interval/timeout/unhealthyThreshold with timeout < interval, each optional unless `required`."""
    interval = draw(st.integers(1001, 86_400_000))
    timeout = draw(st.integers(0, min(interval - 1, 60_000)))
    body: dict[str, Any] = {}
    if required or draw(st.booleans()):
        body["interval"] = draw(duration_text(interval))
    if required or (draw(st.booleans()) and "interval" in body):
        body["timeout"] = draw(duration_text(timeout))
    if draw(st.booleans()):
        body["unhealthyThreshold"] = draw(st.integers(1, 100))
    if "interval" in body and "timeout" not in body and interval <= 2000:
        body["interval"] = "10s"  # the default timeout (2s) must stay below it
    if "timeout" in body and "interval" not in body:
        del body["timeout"]
    return body


def unique_case_insensitive(keys: list[str]) -> bool:
    return len({k.lower() for k in keys}) == len(keys)


header_maps = st.dictionaries(header_names, plain_text, max_size=3).filter(lambda d: unique_case_insensitive(list(d)))


@st.composite
def header_rules(draw: st.DrawFn, *, upstream: bool) -> dict[str, Any]:
    """`set` and `remove` naming each header once, in any case; upstream rules never name X-Authentik-*."""
    names = draw(st.lists(header_names, max_size=4, unique_by=str.lower))
    if upstream:
        names = [n for n in names if not n.lower().startswith("x-authentik-")]
    cut = draw(st.integers(0, len(names)))
    values = st.one_of(plain_text, references) if upstream else plain_text
    rules: dict[str, Any] = {}
    if cut or draw(st.booleans()):
        rules["set"] = {name: draw(values) for name in names[:cut]}
    if names[cut:] or draw(st.booleans()):
        rules["remove"] = names[cut:]
    return rules


def without_request_id_rules(spec: dict[str, Any]) -> dict[str, Any]:
    """With the request-id middleware, no header rule names X-Request-ID (the middleware owns it)."""
    if "request-id" not in spec.get("middleware", []):
        return spec
    for rules in (spec.get("headers", {}), spec.get("headers", {}).get("upstream", {})):
        if "set" in rules:
            rules["set"] = {k: v for k, v in rules["set"].items() if k.lower() != "x-request-id"}
        if "remove" in rules:
            rules["remove"] = [n for n in rules["remove"] if n.lower() != "x-request-id"]
    return spec


def metadata() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"name": names}, optional={"labels": st.dictionaries(label_keys, plain_text.filter(lambda t: len(t) <= 256),
                                                             max_size=2)}
    )


def document(kind: str, spec: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"apiVersion": st.just("hecate.io/v1"), "kind": st.just(kind),
                                  "metadata": metadata(), "spec": spec})


middleware = st.lists(
    st.one_of(st.just("compression"), st.just("request-id"),
              st.builds("rate-limit:{}/{}".format, st.integers(1, 999_999_999), st.sampled_from(["second", "minute",
                                                                                                 "hour"]))),
    max_size=3,
).filter(lambda items: len({item.split(":")[0] for item in items}) == len(items))
routes = document("Route", st.fixed_dictionaries(
    {"domain": domains, "upstreams": st.lists(st.fixed_dictionaries({"dial": dials},
                                                                     optional={"weight": st.integers(1, 100)}),
                                              min_size=1, max_size=3)},
    optional={
        "authPolicy": names,
        "tls": st.fixed_dictionaries({}, optional={"autoHTTPS": st.booleans(), "forceHTTPS": st.booleans(),
                                                   "minVersion": st.sampled_from(["1.2", "1.3", 1.2, 1.3])}),
        "healthCheck": st.builds(lambda path, body: {"path": path, **body},
                                 st.from_regex(r"/[A-Za-z0-9/._~-]{0,16}", fullmatch=True), probe(required=False)),
        "headers": st.builds(lambda rules, upstream: {**rules, **upstream}, header_rules(upstream=False),
                             st.fixed_dictionaries({}, optional={"upstream": header_rules(upstream=True)})),
        "middleware": middleware,
        "canary": st.fixed_dictionaries({"upstream": dials, "percentage": st.integers(0, 100)}),
    },
).map(without_request_id_rules))
policies = document("AuthPolicy", st.fixed_dictionaries(
    {"provider": st.just("authentik")},
    optional={
        "flow": names,
        "requirements": st.fixed_dictionaries({}, optional={
            "groups": st.lists(st.from_regex(GROUP_NAME_PATTERN, fullmatch=True), max_size=3),
            "mfa": st.sampled_from(["required", "optional", "disabled", True, False]),
            "sessionDuration": durations()}),
        "metadata": st.fixed_dictionaries({}, optional={"required": st.lists(st.one_of(
            st.sampled_from(["username", "groups", "email", "name", "uid", "entitlements"]),
            st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,20}", fullmatch=True)), max_size=3)}),
        "allowedMethods": st.lists(st.sampled_from(["password", "webauthn", "totp", "static", "duo", "sms", "email"]),
                                   max_size=3),
        "allowedHttpMethods": st.lists(st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
                                       max_size=3),
    },
))


@st.composite
def stream_specs(draw: st.DrawFn) -> dict[str, Any]:
    preset = draw(st.sampled_from([None, "mailcow", "jenkins", "wazuh"]))
    listen: dict[str, Any] = {}
    if draw(st.booleans()):
        listen["address"] = draw(st.one_of(ipv4, ipv6))
    if preset is None:
        listen["port"] = draw(ports)
    server = hosts if preset else dials
    upstream = st.fixed_dictionaries({"server": server}, optional={
        "weight": st.integers(1, 100), "maxFails": st.integers(0, 100),
        "failTimeout": st.integers(0, 3 * 86_400).flatmap(lambda seconds: duration_text(seconds * 1000)), "backup": st.booleans()})
    upstreams = draw(st.lists(upstream, min_size=1, max_size=3))
    upstreams[0]["backup"] = False
    spec: dict[str, Any] = {"upstreams": draw(st.permutations(upstreams))}
    if preset:
        spec["preset"] = preset
        if draw(st.booleans()):
            spec["protocol"] = "tcp"
    else:
        spec["protocol"] = draw(st.sampled_from(["tcp", "udp"]))
    if listen:
        spec["listen"] = listen
    if draw(st.booleans()) and spec.get("protocol") != "udp":  # the agent's probes are TCP
        spec["healthCheck"] = draw(probe(required=False))
    return spec


streams = document("Stream", stream_specs())
configs = st.fixed_dictionaries({}, optional={"global": st.fixed_dictionaries({}, optional={
    "dns": st.one_of(
        st.fixed_dictionaries({}, optional={"resolvers": st.lists(st.one_of(ipv4, references), max_size=2)}),
        st.fixed_dictionaries({"provider": st.just("hetzner"), "apiToken": references},
                              optional={"defaultTTL": st.integers(30, 86_400),
                                        "target": st.one_of(
                                            st.fixed_dictionaries({"addresses": st.lists(
                                                st.sampled_from(["192.0.2.10", "2001:db8::1"]), min_size=1,
                                                max_size=2)}),
                                            st.fixed_dictionaries({"cname": st.sampled_from(
                                                ["lb.example.net", "lb.example.net."])})),
                                        "policy": st.sampled_from(["upsert-only", "sync"]),
                                        "adopt": st.booleans()})),
    "certificates": st.fixed_dictionaries({}, optional={
        "provider": st.sampled_from(["letsencrypt", "internal"]),
        "email": st.one_of(st.just("ops@example.com"), references), "renewalWindow": durations(),
        "storage": st.sampled_from(["file", "vault", "consul", "redis"])}),
    "healthChecks": probe(required=True),
    "monitoring": st.fixed_dictionaries({}, optional={
        "metrics": st.booleans(), "accessLogs": st.booleans(),
        "prometheus": st.fixed_dictionaries({}, optional={"enabled": st.booleans(), "port": ports})}),
    "security": st.fixed_dictionaries({}, optional={"tlsMinVersion": st.sampled_from(["1.2", "1.3"]),
                                                    "headers": header_maps}),
    "authentik": st.fixed_dictionaries({"outpostUrl": st.one_of(
        st.builds(lambda h, p: f"http://{h}:{p}", host_names, ports), references)}),
})})
VALID: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "Route": routes, "AuthPolicy": policies, "Stream": streams, "Config": configs,
}


# --- mutations ------------------------------------------------------------------------------------

def nodes(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from nodes(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from nodes(item, (*path, index))


def replaced(doc: dict[str, Any], path: tuple[Any, ...], new: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    node: Any = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = new
    return out


def nodes_at(doc: dict[str, Any], path: tuple[Any, ...]) -> Any:
    node: Any = doc
    for part in path:
        node = node[part]
    return node


def removed(doc: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    node: Any = out
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return out


# Maps whose keys are data (label keys, header names), not field names.
FREE_FORM = ("labels", "set", "headers")
other_types = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 10**6),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()),
    st.text(max_size=4), st.lists(st.integers(0, 3), max_size=2), st.dictionaries(st.sampled_from(["a", "b"]),
                                                                                 st.integers(0, 3), max_size=1),
)
DIGIT_ZERO = {"arabic-indic": 0x0660, "fullwidth": 0xFF10, "devanagari": 0x0966}  # each script's '0'


def _other_digits(text: str, script: str) -> str:
    return "".join(chr(DIGIT_ZERO[script] + int(c)) if c in "0123456789" else c for c in text)


STRING_CHANGES: dict[str, Callable[[str], str]] = {
    "leading space": lambda s: " " + s,
    "trailing space": lambda s: s + " ",
    "trailing newline": lambda s: s + "\n",
    "leading tab": lambda s: "\t" + s,
    "no-break space": lambda s: s + "\u00a0",
    "byte order mark": lambda s: "\ufeff" + s,
    "upper case": str.upper,
    "lower case": str.lower,
    "title case": str.title,
    "arabic-indic digits": lambda s: _other_digits(s, "arabic-indic"),
    "fullwidth digits": lambda s: _other_digits(s, "fullwidth"),
    "devanagari digits": lambda s: _other_digits(s, "devanagari"),
    "fullwidth letters": lambda s: "".join(chr(ord(c) + 0xFEE0) if "a" <= c <= "z" else c for c in s),
    "empty": lambda s: "",
    "brace": lambda s: s + "{",
    "placeholder": lambda s: "{env.X}" + s,
    "dollar": lambda s: s + "$",
    "semicolon": lambda s: s + ";",
    "NUL": lambda s: s + "\x00",
    "line break inside": lambda s: s[:1] + "\r\n" + s[1:],
    "leading zero": lambda s: re.sub(r"(?<![0-9])([0-9])", r"0\1", s, count=1),
    "very long": lambda s: (s or "a") * 300,
}


def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", lambda m: "_" + m.group(1).lower(), name)


@st.composite
def mutated(draw: st.DrawFn, family: str) -> tuple[str, dict[str, Any]]:
    kind = draw(st.sampled_from(KINDS))
    doc = draw(VALID[kind])
    if family == "valid":
        return kind, doc
    everything = [(path, value) for path, value in nodes(doc) if path]
    assume(everything or family == "extra-field")
    if family == "wrong-type":
        path, value = draw(st.sampled_from(everything))
        new = draw(other_types.filter(lambda v: type(v) is not type(value)))
        return kind, replaced(doc, path, new)
    if family == "out-of-range":
        numbers = [(p, v) for p, v in everything if isinstance(v, int) and not isinstance(v, bool)]
        assume(numbers)
        path, value = draw(st.sampled_from(numbers))
        new = draw(st.sampled_from([-1, 0, 1, 100, 101, 65535, 65536, 10**9, 10**20, -(10**20)]) | st.integers())
        return kind, replaced(doc, path, new)
    if family == "string":
        strings = [(p, v) for p, v in everything if isinstance(v, str)]
        assume(strings)
        path, value = draw(st.sampled_from(strings))
        change = draw(st.sampled_from(sorted(STRING_CHANGES)))
        new = STRING_CHANGES[change](value)
        assume(new != value)
        return kind, replaced(doc, path, new)
    if family == "extra-field":
        mappings = [(p, v) for p, v in nodes(doc) if isinstance(v, dict) and not (p and p[-1] in FREE_FORM)]
        path, mapping = draw(st.sampled_from(mappings))
        siblings = [k for k in mapping if isinstance(k, str)]
        spellings = [snake(k) for k in siblings] + [k.lower() for k in siblings] + [k.upper() for k in siblings]
        spellings += [k + "s" for k in siblings] + ["extra", "spec", "name", "global_", "apiversion"]
        key = draw(st.sampled_from(spellings).filter(lambda k: k not in mapping))
        new = dict(mapping)
        new[key] = mapping[siblings[0]] if siblings and draw(st.booleans()) else draw(other_types)
        return kind, replaced(doc, path, new) if path else new
    if family == "renamed-field":
        keys = [(p, v) for p, v in everything if isinstance(p[-1], str) and not (len(p) > 1 and p[-2] in FREE_FORM)]
        assume(keys)
        path, value = draw(st.sampled_from(keys))
        name = path[-1]
        parent = path[:-1]
        mapping = dict(nodes_at(doc, parent))
        spellings = {snake(name), snake(name).replace("_", "-"), name.lower(), name.upper(), name[:1].upper() + name[1:]}
        spellings -= set(mapping)
        assume(spellings)
        spelling = draw(st.sampled_from(sorted(spellings)))
        renamed = {spelling if k == name else k: v for k, v in mapping.items()}
        return kind, replaced(doc, parent, renamed) if parent else renamed
    if family == "missing-field":
        keys = [p for p, _ in everything if isinstance(p[-1], str)]
        assume(keys)
        return kind, removed(doc, draw(st.sampled_from(keys)))
    raise AssertionError(family)


FAMILIES = ["valid", "wrong-type", "out-of-range", "string", "extra-field", "renamed-field", "missing-field"]


@pytest.mark.parametrize("family", FAMILIES)
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_the_schema_and_the_agent_give_the_same_verdict(family: str, data: st.DataObject) -> None:
    kind, doc = data.draw(mutated(family), label="document")
    if family == "valid":
        verdict = agent_verdict(kind, dump_yaml(doc))
        assert verdict is not None and verdict[1] == [], verdict
    outcome = check_agreement(kind, doc)
    event(outcome)
    assume(outcome.startswith("both"))


# Examples from the issue, kept as regressions of the property above.
@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("Stream", ("spec", "upstreams", 0, "max_fails"), 3),
        ("Route", ("spec", "health_check"), {"path": "/h"}),
        ("Route", ("spec", "auth_policy"), "staff"),
        ("Config", ("global", "security", "tls_min_version"), "1.3"),
        ("Route", ("spec", "healthCheck"), {"path": "/h", "interval": " 5s"}),
        ("Route", ("spec", "healthCheck"), {"path": "/h", "interval": "\u0665s"}),
        ("Route", ("spec", "healthCheck"), {"path": "/h", "interval": "\uff15s"}),
        ("Stream", ("spec", "healthCheck"), {"interval": "5s\n"}),
        ("Route", ("spec", "middleware"), ["compression", "compression"]),
        ("Stream", ("spec", "preset"), "mailcow"),
    ],
)
def test_examples_from_the_issue_agree(kind: str, path: tuple[Any, ...], value: Any) -> None:
    from tests.helpers import config, route, stream

    base = {"Route": route(), "Stream": stream(), "Config": config(security={})}[kind]
    node: Any = base
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    assert check_agreement(kind, base) == "both refuse"


DIALS = {
    "port-leading-zero": "app.internal:080",
    "ipv6-zone": "[fe80::1%eth0]:80",
    "ipv6-zone-placeholder": "[fe80::1%{http.request.uri.query.x}]:80",
    "ipv6-invalid": "[1:2:3]:80",
    "host-label-trailing-dash": "a-.example:80",
    "host-label-too-long": "a" * 64 + ".example:80",
    "port-zero": "app.internal:0",
    "port-too-high": "app.internal:65536",
    "no-port": "app.internal",
    "ipv6": "[::1]:80",
    "ipv4": "10.0.0.1:80",
    "numeric-last-label": "1.2.3.4.5:80",
    "broken-ipv4": "999.1.1.1:80",
}

@pytest.mark.parametrize(
    ("case", "where"),
    [
        pytest.param(case, where, id=f"{where}-{case}") for case in DIALS for where in ("route", "canary", "stream")
    ],
)
def test_dial_addresses_agree(case: str, where: str) -> None:
    from tests.helpers import route, stream

    dial = DIALS[case]
    if where == "route":
        kind, doc = "Route", route(upstreams=[{"dial": dial}])
    elif where == "canary":
        kind, doc = "Route", route(canary={"upstream": dial, "percentage": 5})
    else:
        kind, doc = "Stream", stream(upstreams=[{"server": dial}])
    assert check_agreement(kind, doc).startswith("both")


def test_the_readme_lists_every_excluded_rule() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Rules the schemas cannot express", 1)[1].split("\n#", 1)[0]
    for name, _ in EXCLUDED:
        assert name in section, name
