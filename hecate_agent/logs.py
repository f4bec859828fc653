"""structlog setup: JSON lines for journald (console-pretty on a TTY), secrets redacted, no traceback locals.

- Each line starts with a `<N>` syslog priority prefix when stdout is not a TTY,
  so journald files it at the right level (`SyslogLevelPrefix=`) and the stored
  message stays pure JSON.
- Values under secret-looking keys, every resolved secret value (the registry in
  `hecate_agent.redaction`) and Vault-token-shaped strings anywhere are
  replaced by `<redacted>`; the same processor runs for stdlib loggers (httpx,
  apscheduler, git) through structlog's ProcessorFormatter.
- Tracebacks are rendered without local variables: structlog's default shows them,
  and a local named `token` would land in the journal.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer

from hecate_agent import redaction

SECRET_KEY = re.compile(r"token|secret|password|passwd|authorization|secret_id|role_id|api_key|apikey", re.I)
VAULT_TOKEN = re.compile(r"\b(hv[sbr]\.[A-Za-z0-9_-]{20,}|[sb]\.[A-Za-z0-9]{24})\b")
PRIORITY = {"critical": 2, "error": 3, "warning": 4, "info": 6, "debug": 7}
MAX_FIELD = 8000  # journald splits lines over 48 KiB into several records


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        value = VAULT_TOKEN.sub("<redacted>", redaction.scrub(value))
        return value if len(value) <= MAX_FIELD else value[:MAX_FIELD] + "…(truncated)"
    if isinstance(value, dict):
        return {
            k: ("<redacted>" if isinstance(k, str) and SECRET_KEY.search(k) else _scrub(v)) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if SECRET_KEY.search(key):
            event[key] = "<redacted>"
        else:
            event[key] = _scrub(event[key])
    return event


def _priority_prefix(_: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event["_priority"] = PRIORITY.get(method, 6)
    return event


class _JournalRenderer:
    def __init__(self) -> None:
        self._json = structlog.processors.JSONRenderer(sort_keys=True)

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> str:
        priority = event.pop("_priority", 6)
        rendered = self._json(logger, method, event)
        text = rendered.decode() if isinstance(rendered, bytes) else rendered
        return f"<{priority}>{text}"


def configure(level: str = "info", stream: TextIO | None = None, *, console: bool | None = None) -> None:
    stream = stream or sys.stdout
    console = stream.isatty() if console is None else console
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    exceptions = structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))
    renderer: Any = structlog.dev.ConsoleRenderer() if console else _JournalRenderer()
    tail: list[Any] = [] if console else [exceptions, _priority_prefix]
    structlog.configure(
        processors=[*shared, *tail, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[*shared, *tail],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.getLevelNamesMapping()[level.upper()])
    for noisy in ("httpx", "httpcore", "apscheduler", "git", "watchfiles"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str = "hecate-agent") -> Any:
    return structlog.get_logger(name)
