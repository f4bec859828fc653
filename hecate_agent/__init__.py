"""hecate-agent: a GitOps agent for Caddy and Nginx reverse-proxy nodes."""

__version__ = "0.1.0"
