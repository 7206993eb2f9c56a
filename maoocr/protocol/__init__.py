"""Wire schema: the pydantic models every boundary (HTTP, Celery payloads, Redis records) speaks."""
