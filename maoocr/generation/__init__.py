"""Running generation jobs into a resident engine: the job lifecycle and the engine's event-loop host."""
