"""What every spec kind shares: the strict base model, metadata, probe durations, stream presets."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from hecate_agent.spec.types import Duration, DurationField, LabelKey, LabelValue, ResourceName, at_most

API_VERSION = "hecate.io/v1"

# Ports each stream preset opens; every one is TCP (DESIGN.md, "Spec format").
PRESET_PORTS: dict[str, tuple[int, ...]] = {
    "mailcow": (25, 465, 587, 143, 993, 110, 995),
    "jenkins": (50000,),
    "wazuh": (1514, 1515),
}


def _timeout_below_interval(timeout: Duration | None, info: ValidationInfo) -> Duration | None:
    """A probe must finish before the next one starts (`interval` is declared, so validated, first)."""
    interval = info.data.get("interval")
    if timeout is not None and isinstance(interval, Duration) and timeout >= interval:
        raise PydanticCustomError(
            "hecate",
            f"timeout ({timeout}) must be shorter than interval ({interval}); "
            "a probe must finish before the next one starts",
        )
    return timeout


# A probe more than a day apart checks nothing; and Caddy's fail_duration (interval x threshold, at
# most 100) then stays far below the longest duration Go can hold.
MAX_PROBE_INTERVAL = Duration(86_400_000)
ProbeInterval = Annotated[DurationField, at_most(MAX_PROBE_INTERVAL, "a health-check interval")]
ProbeTimeout = Annotated[
    DurationField, at_most(MAX_PROBE_INTERVAL, "a health-check timeout"), AfterValidator(_timeout_below_interval)
]


class SpecModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        alias_generator=to_camel,
        # Only the YAML spelling (camelCase) is accepted: `max_fails` is an unknown field, as the schemas say.
        validate_by_name=False,
        validate_by_alias=True,
        use_attribute_docstrings=False,
    )


class Metadata(SpecModel):
    name: ResourceName = Field(description="Name of the resource, unique among resources of its kind.")
    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict,
        description='Free-form key/value labels. The agent reads one: hecate.io/verify: "true" on a Route '
        "makes the daemon check after each change that it answers through Caddy (else it rolls back).",
    )
