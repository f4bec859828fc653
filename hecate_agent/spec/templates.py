"""Text that may hold `${ENV_VAR}` or `${vault:path#key}` references (global config, upstream request
headers, the outpost URL, the DNS token), resolved on the node at render time and never shown."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from hecate_agent.spec.addresses import HTTP_URL_PATTERN, AddressError, parse_http_url


def _fail(message: str) -> PydanticCustomError:
    return PydanticCustomError("hecate", message)


# --- templated strings (global config, upstream request headers) ----------------

# What may stand inside `${…}`: an environment variable, or a key of a Vault KV v2 secret.
REFERENCE_BODY = r"[A-Za-z_][A-Za-z0-9_]*|vault:[A-Za-z0-9_][A-Za-z0-9_./-]*#[A-Za-z0-9_.-]+"
TEMPLATE_PATTERN = r"^([^\x00-\x08\x0a-\x1f\x7f${}]|\$\$|\$\{(" + REFERENCE_BODY + r")\})*$"
_TEMPLATE = re.compile(TEMPLATE_PATTERN[1:-1] + r"\Z")
_REFERENCE = re.compile(r"\$\{(" + REFERENCE_BODY + r")\}")
_BAD_VAULT_PATH = re.compile(r"(^|/)\.{1,2}(/|#)|//|/#")


def _check_vault_paths(value: str) -> str:
    for name in _REFERENCE.findall(value.replace("$$", "")):
        if name.startswith("vault:") and _BAD_VAULT_PATH.search(name[len("vault:") :]):
            raise _fail(
                f"{value!r}: the Vault path in ${{{name}}} has an empty, '.' or '..' segment; "
                "write it as mount-relative path segments, e.g. ${vault:apps/billing#api_key}"
            )
    return value


def check_template(value: str) -> str:
    if not _TEMPLATE.match(value):
        raise _fail(
            f"{value!r}: '$' starts a reference written '${{NAME}}' (an environment variable: letters, digits, "
            "'_') or '${vault:path#key}'; write '$$' for a literal '$'. Braces are only allowed inside a reference"
        )
    return _check_vault_paths(value)


def template_references(value: str) -> list[str]:
    """What the `${…}` references of a templated string name: `NAME` or `vault:path#key`."""
    return _REFERENCE.findall(value.replace("$$", ""))


def header_references(value: str) -> list[str]:
    """The references of an upstream header value (there `$` only starts one before `{`)."""
    return _REFERENCE.findall(value)


Templated = Annotated[
    str,
    Field(
        pattern=TEMPLATE_PATTERN,
        max_length=4096,
        description="Text that may contain ${ENV_VAR} or ${vault:path#key} references, resolved on the node at "
        "render time and never shown in plans, logs or status.",
    ),
    AfterValidator(check_template),
]

# An upstream request header may carry a credential for the backend, so it may hold references.
# '$' not followed by '{' stays a literal '$' (values valid before references existed keep their meaning).
UPSTREAM_HEADER_VALUE_PATTERN = r"^([^\x00-\x08\x0a-\x1f\x7f{}]|\$\{(" + REFERENCE_BODY + r")\})*$"
UpstreamHeaderValue = Annotated[
    str,
    Field(
        pattern=UPSTREAM_HEADER_VALUE_PATTERN,
        max_length=4096,
        description="A header value for the upstream request: no line breaks or control characters, no '{' or '}' "
        "except in ${ENV_VAR} or ${vault:path#key} references, resolved on the node and never shown.",
    ),
    AfterValidator(_check_vault_paths),
]


_WHOLE_REFERENCE = re.compile(r"\$\{(" + REFERENCE_BODY + r")\}\Z")
URL_OR_REFERENCE_PATTERN = "^(" + HTTP_URL_PATTERN[1:-1] + r"|\$\{(" + REFERENCE_BODY + r")\})$"


def check_url_or_reference(value: str) -> str:
    """A written URL is parsed now, as the renderer will parse it (a reference is parsed once resolved)."""
    if _WHOLE_REFERENCE.match(value):
        return _check_vault_paths(value)
    if value.startswith("$"):
        raise _fail(f"{value!r}: write a URL, or a single reference '${{NAME}}' or '${{vault:path#key}}' alone")
    try:
        parse_http_url(value)
    except AddressError as exc:
        raise _fail(f"{value!r} is not a usable URL: {exc}; write e.g. 'http://authentik-outpost:9000'") from None
    return value


UrlOrReference = Annotated[
    str,
    Field(
        json_schema_extra={"pattern": URL_OR_REFERENCE_PATTERN},
        max_length=2048,
        description="An http:// or https:// URL (host name, IPv4 or [IPv6] address, optional port 1-65535), "
        "or a single ${ENV_VAR} or ${vault:path#key} reference that holds one.",
    ),
    AfterValidator(check_url_or_reference),
]


SECRET_REFERENCE_PATTERN = r"^\$\{(" + REFERENCE_BODY + r")\}$"
_SECRET_REFERENCE = re.compile(SECRET_REFERENCE_PATTERN[1:-1] + r"\Z")


def _check_secret_reference(value: Any) -> str:
    """Never echo the value: a token written in place of a reference is the secret itself."""
    if not isinstance(value, str) or not _SECRET_REFERENCE.match(value):
        raise _fail(
            "expected a reference to a secret, '${NAME}' (environment) or '${vault:path#key}'; the value given "
            "is not one and is not shown here. Never write the secret itself in the repository (and rotate it "
            "if it was committed)"
        )
    return _check_vault_paths(value)


SecretReference = Annotated[
    str,
    PlainValidator(_check_secret_reference),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": SECRET_REFERENCE_PATTERN,
            "maxLength": 2048,
            "description": "A single ${ENV_VAR} or ${vault:path#key} reference; the value is resolved on the node, "
            "never written in the repository and never shown.",
        }
    ),
]
