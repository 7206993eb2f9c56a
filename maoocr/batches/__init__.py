"""The OpenAI Batch API on the job queue: uploaded JSONL files, batch records, and the batch thread that queues
each line as a job and collects every answer exactly once into the batch's output and error files."""
