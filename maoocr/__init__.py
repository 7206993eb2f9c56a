"""MaoOCR core library: documents, pages, engines, jobs and streams. Imports neither Flask nor Celery."""

__version__ = "0.1.0"
