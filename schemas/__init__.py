"""Pydantic models only: job requests per kind, the job record, events, errors. No Celery, no I/O."""
