"""Usage per API key: the report behind GET /v1/usage, its Prometheus counters, and the quotas checked at submit."""
