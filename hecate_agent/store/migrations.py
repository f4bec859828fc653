"""State-dir format migrations, run by themselves when an older file is read."""

from __future__ import annotations

from typing import Any


def migrate_journal(journal: dict[str, Any]) -> dict[str, Any]:
    """A journal written by an agent before targets (keys oldCaddy, oldNginxFolder, newNginxFolder,
    nginxNeeded) in today's form, so an upgrade across a crash still recovers."""
    if "targets" in journal:
        return journal
    targets: dict[str, Any] = {"caddy": {"old": journal.get("oldCaddy") or {}}}
    if journal.get("nginxNeeded"):
        targets["nginx"] = {
            "old": journal.get("oldNginxFolder"),
            "new": journal.get("newNginxFolder"),
            "listeners": (journal.get("snapshot") or {}).get("nginx_listeners") or [],
            "restoreListeners": [],
        }
    return {**journal, "targets": targets}
