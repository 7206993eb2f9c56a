"""Celery transport: the app, the task functions (thin calls into maoocr) and worker start-up."""
