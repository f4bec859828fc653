"""hecate-agent: a GitOps agent for Caddy and Nginx reverse-proxy nodes.

The public API for scripts around the agent is what `__all__` names (see the README,
"Scripting"); everything else is private by convention. Names load lazily on first use,
so `hecate-agent --help` and `validate` stay fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    # settings
    "AgentSettings": "hecate_agent.settings",
    "load_settings": "hecate_agent.settings",
    # read and validate specs (pure)
    "SourceFile": "hecate_agent.spec.loader",
    "DesiredState": "hecate_agent.spec.loader",
    "load_specs": "hecate_agent.spec.loader",
    "read_directory": "hecate_agent.sources.directory",
    # render (pure)
    "Rendered": "hecate_agent.render.bundle",
    "render_all": "hecate_agent.render.bundle",
    # plan (pure) and planning against a node
    "Plan": "hecate_agent.plan",
    "make_plan": "hecate_agent.plan",
    "offline_plan": "hecate_agent.plan",
    "prepare": "hecate_agent.engine.prepare",
    # the engine
    "Engine": "hecate_agent.engine.reconcile",
    "Result": "hecate_agent.engine.reconcile",
    "Outcome": "hecate_agent.engine.outcomes",
    "Phase": "hecate_agent.engine.outcomes",
    "Node": "hecate_agent.engine.node",
    "Target": "hecate_agent.engine.ports",
    "TargetLive": "hecate_agent.engine.ports",
}

__all__ = [
    "AgentSettings",
    "DesiredState",
    "Engine",
    "Node",
    "Outcome",
    "Phase",
    "Plan",
    "Rendered",
    "Result",
    "SourceFile",
    "Target",
    "TargetLive",
    "__version__",
    "load_settings",
    "load_specs",
    "make_plan",
    "offline_plan",
    "prepare",
    "read_directory",
    "render_all",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hecate_agent' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from hecate_agent.engine.node import Node
    from hecate_agent.engine.outcomes import Outcome, Phase
    from hecate_agent.engine.ports import Target, TargetLive
    from hecate_agent.engine.prepare import prepare
    from hecate_agent.engine.reconcile import Engine, Result
    from hecate_agent.plan import Plan, make_plan, offline_plan
    from hecate_agent.render.bundle import Rendered, render_all
    from hecate_agent.settings import AgentSettings, load_settings
    from hecate_agent.sources.directory import read_directory
    from hecate_agent.spec.loader import DesiredState, SourceFile, load_specs
