"""Development helpers the tests and the benchmarks share: real processes (Redis, workers, the API) started and
stopped cleanly, and documents whose text is known exactly. Not shipped (neither in the wheel nor in the image)."""
