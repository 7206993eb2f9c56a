"""Flask transport: an app factory and blueprints over maoocr; enqueues by task name through Celery."""
