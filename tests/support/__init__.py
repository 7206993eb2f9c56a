"""Helpers the tests and benchmarks share: real processes (Redis, worker, API) started and stopped cleanly."""
