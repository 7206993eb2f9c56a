"""Webhooks: one signed POST to a job's `webhook_url` when the job ends, retried with back-off until delivered."""
