"""The imperative shell that runs the engine: the daemon and its triggers, the HTTP surface,
probes, rollout gating, and the node commands."""
