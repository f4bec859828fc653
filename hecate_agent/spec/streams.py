"""The Stream kind (a TCP or UDP listener proxied by Nginx) as pydantic models; see models.py."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from hecate_agent.spec.addresses import SERVER_HOST_PATTERN, SERVER_WITH_PORT_PATTERN, AddressError, parse_server
from hecate_agent.spec.base import PRESET_PORTS, Metadata, ProbeInterval, ProbeTimeout, SpecModel
from hecate_agent.spec.types import Duration, ListenAddress, Port, StreamServer, WholeSecondsDuration

# --- Stream -------------------------------------------------------------------------


class StreamUpstream(SpecModel):
    server: StreamServer
    weight: int = Field(default=1, ge=1, le=100, description="Relative share of connections, 1-100.")
    max_fails: int = Field(default=1, ge=0, le=100, description="Failed attempts before the server is marked down.")
    fail_timeout: WholeSecondsDuration = Field(
        default=Duration(10_000),
        description="Window for max_fails and how long a failed server rests; whole seconds (Nginx has no finer unit).",
    )
    backup: bool = Field(default=False, description="Only used when every non-backup server is down.")


class StreamListen(SpecModel):
    address: ListenAddress = Field(default="0.0.0.0", description="Address to listen on.")
    port: Port | None = Field(default=None, description="Port to listen on; omitted with a preset.")


class StreamHealthCheck(SpecModel):
    type: Literal["tcp"] = Field(default="tcp", description="tcp: the probe opens a TCP connection to the upstream.")
    interval: ProbeInterval = Field(default=Duration(10_000), description="Time between agent-side probes, at most 1d.")
    timeout: ProbeTimeout = Field(
        default=Duration(2_000), validate_default=True, description="Probe timeout, shorter than interval."
    )
    unhealthy_threshold: int = Field(
        default=3, ge=1, le=100, description="Failed probes in a row before the agent marks the upstream down."
    )
    healthy_threshold: int = Field(
        default=2, ge=1, le=100, description="Successful probes in a row before a down upstream is put back."
    )


def _set(key: str) -> dict[str, Any]:
    """JSON Schema: `key` is present and not null (what `is not None` means to the model)."""
    return {"required": [key], "properties": {key: {"not": {"type": "null"}}}}


# `_listen_and_upstreams_fit`, said in JSON Schema so editors refuse what the agent refuses.
_STREAM_RULES: dict[str, Any] = {
    "allOf": [
        {
            "if": _set("preset"),
            "then": {
                "properties": {
                    "listen": {"not": _set("port")},
                    "protocol": {"const": "tcp"},
                    "upstreams": {"items": {"properties": {"server": {"pattern": SERVER_HOST_PATTERN}}}},
                }
            },
            "else": {
                "required": ["listen"],
                "properties": {
                    "listen": _set("port"),
                    "upstreams": {"items": {"properties": {"server": {"pattern": SERVER_WITH_PORT_PATTERN}}}},
                },
            },
        },
        # The agent's probes open TCP connections: a udp stream has no healthCheck.
        {
            "if": {"required": ["protocol"], "properties": {"protocol": {"const": "udp"}}},
            "then": {"not": _set("healthCheck")},
        },
    ]
}


class StreamSpec(SpecModel):
    model_config = ConfigDict(json_schema_extra=_STREAM_RULES)

    protocol: Literal["tcp", "udp"] = Field(default="tcp", description="tcp or udp.")
    preset: Literal["mailcow", "jenkins", "wazuh"] | None = Field(
        default=None, description="Open the ports of a known service: mailcow, jenkins or wazuh (all TCP)."
    )
    listen: StreamListen = Field(default_factory=StreamListen, description="Where this node listens.")
    upstreams: list[StreamUpstream] = Field(
        min_length=1,
        max_length=100,
        description="Backends; at least one that is not a backup.",
        json_schema_extra={"contains": {"not": {"required": ["backup"], "properties": {"backup": {"const": True}}}}},
    )
    health_check: StreamHealthCheck | None = Field(default=None, description="Agent-side active checks.")

    @model_validator(mode="after")
    def _listen_and_upstreams_fit(self) -> StreamSpec:
        if self.preset is not None:
            if self.listen.port is not None:
                raise PydanticCustomError(
                    "hecate",
                    f"listen.port is set, but preset {self.preset!r} decides the ports "
                    f"({', '.join(map(str, PRESET_PORTS[self.preset]))}); remove listen.port",
                )
            if self.protocol != "tcp":
                raise PydanticCustomError("hecate", f"preset {self.preset!r} is TCP only; remove protocol: udp")
        elif self.listen.port is None:
            raise PydanticCustomError("hecate", "listen.port is required (or use a preset)")
        if self.health_check is not None and self.protocol == "udp":
            raise PydanticCustomError(
                "hecate",
                "healthCheck (type tcp) opens TCP connections, which a udp stream's upstreams need not accept; "
                "remove healthCheck (Nginx's passive maxFails/failTimeout still apply)",
            )
        for upstream in self.upstreams:
            _check_stream_server(upstream.server, with_port=self.preset is None, preset=self.preset)
        if all(upstream.backup for upstream in self.upstreams):
            raise PydanticCustomError(
                "hecate", "every upstream is a backup; at least one must be a primary (backup: false)"
            )
        return self

    def listeners(self) -> list[tuple[str, int, str]]:
        """Every (address, port, protocol) this stream listens on."""
        ports = PRESET_PORTS[self.preset] if self.preset else (self.listen.port or 0,)
        return [(self.listen.address, port, self.protocol) for port in ports]


def _check_stream_server(server: str, *, with_port: bool, preset: str | None) -> None:
    """The field checked the syntax; here, whether a port must or must not be given."""
    try:
        host, port = parse_server(server, with_port=with_port)
    except AddressError as exc:
        raise PydanticCustomError("hecate", f"upstream {server!r}: {exc}") from None
    if not with_port and port is not None:
        raise PydanticCustomError(
            "hecate",
            f"upstream {server!r}: with preset {preset!r} give the host only ({host!r}); "
            f"each preset port is forwarded to the same port on it",
        )


class StreamDocument(SpecModel):
    api_version: Literal["hecate.io/v1"] = Field(description="Always hecate.io/v1.")
    kind: Literal["Stream"] = Field(description="Stream: a TCP or UDP listener proxied by Nginx.")
    metadata: Metadata = Field(description="Name and labels.")
    spec: StreamSpec = Field(description="What the stream does.")
