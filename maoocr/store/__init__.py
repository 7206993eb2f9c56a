"""Everything MaoOCR keeps in Redis: job records, job streams, job-done events, worker heartbeats, the combined
script calls they share, and the one client factory. `keys` names every key and channel (the Redis layout)."""
