"""Authentik provisioning: AuthPolicy routes mapped to Authentik objects, planned and applied through its API."""
