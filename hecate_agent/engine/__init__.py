"""The engine: one reconcile for `apply` and `run` (outcomes, verification, the reconcile itself).

Kept import-free: `hecate_agent.engine.outcomes` is read by the status writer and the CLI.
"""
