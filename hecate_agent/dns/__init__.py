"""DNS records for routes: mapping, plan, provider, target, propagation wait (see README)."""
