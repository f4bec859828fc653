"""Plans for people (text, coloured on a TTY), programs (json) and pull requests (markdown)."""

from __future__ import annotations

import json
from typing import Any

from hecate_agent.plan import FieldChange, Plan, ResourceChange

SYMBOLS = {"create": "+", "update": "~", "delete": "-", "unchanged": " "}
COLOURS = {"create": "\033[32m", "update": "\033[33m", "delete": "\033[31m", "drift": "\033[35m"}
RESET = "\033[0m"
MAX_SHOWN = 200  # field changes per resource; more are summarised


def _value(value: Any) -> str:
    if value is None:
        return "(none)"
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= 120 else text[:117] + "..."


def _fields(changes: tuple[FieldChange, ...], indent: str) -> list[str]:
    lines = [f"{indent}{c.path}: {_value(c.before)} → {_value(c.after)}" for c in changes[:MAX_SHOWN]]
    if len(changes) > MAX_SHOWN:
        lines.append(f"{indent}... and {len(changes) - MAX_SHOWN} more")
    return lines


def render_text(plan: Plan, *, colour: bool = False) -> str:
    def paint(kind: str, text: str) -> str:
        return f"{COLOURS[kind]}{text}{RESET}" if colour and kind in COLOURS else text

    head = f"Revision {plan.revision}"
    head += f" (last applied: {plan.last_applied})" if plan.last_applied else " (nothing applied yet)"
    if plan.offline:
        head = f"Revision {plan.revision} compared with {plan.last_applied} (specs only, no proxies)"
    lines = [head, ""]
    for change in plan.changes:
        if change.action == "unchanged" and not change.drift:
            continue
        symbol = SYMBOLS[change.action]
        label = change.action if change.action != "unchanged" else "unchanged, but drifted"
        lines.append(paint(change.action, f"  {symbol} {change.key}  ({label})"))
        lines += _fields(change.fields, "      ")
        if change.drift:
            lines.append(paint("drift", "      ! drift: live differs from the last applied revision"))
            lines += _fields(change.drift, "        ")
    if plan.unmanaged:
        lines += ["", "Not managed by hecate-agent (left alone):"]
        lines += [f"  · {item}" for item in plan.unmanaged]
    if plan.notes:
        lines += [""] + [f"Note: {note}" for note in plan.notes]
    lines += ["", plan.summary_line()]
    return "\n".join(lines) + "\n"


def render_json(plan: Plan) -> str:
    return json.dumps(plan.to_dict(), indent=2, sort_keys=True) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(plan: Plan) -> str:
    """A summary table and collapsible details, ready for a pull-request comment."""
    s = plan.summary()
    against = f" against `{plan.last_applied}`" if plan.last_applied else ""
    lines = [
        f"### hecate-agent plan for `{plan.revision}`{against}",
        "",
        "| create | update | delete | unchanged | drift |",
        "|---:|---:|---:|---:|---:|",
        f"| {s['create']} | {s['update']} | {s['delete']} | {s['unchanged']} | {s['drift']} |",
        "",
    ]
    changed = [c for c in plan.changes if c.action != "unchanged" or c.drift]
    if not changed:
        lines.append("**No changes.**")
        return "\n".join(lines) + "\n"
    lines += ["| | resource | change |", "|---|---|---|"]
    for change in changed:
        lines.append(f"| {SYMBOLS[change.action].strip() or '!'} | `{change.key}` | {_summary(change)} |")
    lines.append("")
    for change in changed:
        if not change.fields and not change.drift:
            continue
        lines += [f"<details><summary><code>{change.key}</code> ({change.action})</summary>", "", "```diff"]
        for c in change.fields[:MAX_SHOWN]:
            lines += [f"- {c.path}: {_value(c.before)}", f"+ {c.path}: {_value(c.after)}"]
        for c in change.drift[:MAX_SHOWN]:
            lines.append(f"! drift {c.path}: {_value(c.before)} → {_value(c.after)}")
        lines += ["```", "", "</details>", ""]
    lines.append(_md_escape(plan.summary_line()))
    return "\n".join(lines) + "\n"


def _summary(change: ResourceChange) -> str:
    parts = [change.action]
    if change.fields:
        shown = ", ".join(f"`{_md_escape(c.path)}`" for c in change.fields[:3])
        more = f" and {len(change.fields) - 3} more" if len(change.fields) > 3 else ""
        parts.append(shown + more)
    if change.drift:
        parts.append("drifted")
    return "; ".join(parts)


RENDERERS = {"text": render_text, "json": render_json, "markdown": render_markdown}
