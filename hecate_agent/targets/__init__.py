"""Adapters to the systems the agent manages: Caddy (admin API), Nginx (stream files), sockets."""
