"""A generation run again after its worker died: what subscribers already saw, and what the new attempt publishes.

A deterministic job (a `seed`, or `temperature` 0) regenerates the same text, so the text already on the stream
is held back and the stream simply continues. When the new text departs from it, or the job samples freely, one
`restart` chunk (carrying the attempt number) tells subscribers to drop what they have of the job; the
attempt's text then follows from its beginning. Either way the record stays gap-free and nothing is repeated
without a `restart` before it.
"""

from __future__ import annotations

from maoocr.protocol.generation import GenerationParams, StreamChunk


class Resume:
    def __init__(self, job_id: str, attempt: int, seen: dict[int, str], seen_finish: dict[int, str],
                 deterministic: bool) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.seen = seen  # per choice: text subscribers have since the last restart
        self.seen_finish = seen_finish
        self.fresh = not (seen or seen_finish)  # nothing to hold back: publish everything as it comes
        self.deterministic = deterministic
        self.texts: dict[int, str] = {}  # this attempt's text so far, per choice
        self.finishes: dict[int, str] = {}
        self.emitted: dict[int, int] = {i: len(t) for i, t in seen.items()}  # characters on the stream

    @classmethod
    def from_record(cls, job_id: str, attempt: int, params: GenerationParams,
                    chunks: list[StreamChunk]) -> "Resume":
        seen: dict[int, str] = {}
        finish: dict[int, str] = {}
        for chunk in chunks:
            if chunk.event == "restart":
                seen, finish = {}, {}
            elif chunk.event == "token":
                seen[chunk.index] = seen.get(chunk.index, "") + chunk.delta
                if chunk.finish_reason:
                    finish[chunk.index] = chunk.finish_reason
        deterministic = params.seed is not None or params.temperature == 0
        return cls(job_id, attempt, seen, finish, deterministic)

    def start(self) -> list[StreamChunk]:
        """Chunks to publish before the attempt runs: a `restart` when the old text cannot be continued."""
        if self.fresh or self.deterministic:
            return []
        return self._restart()

    def feed(self, index: int, text: str, finish_reason: str | None) -> list[StreamChunk]:
        """One engine delta of this attempt → the chunks to publish for it (maybe none, maybe a restart)."""
        full = self.texts.get(index, "") + text
        self.texts[index] = full
        if finish_reason:
            self.finishes[index] = finish_reason
        if self.fresh:
            return [self._token(index, text, finish_reason)] if text or finish_reason else []
        seen = self.seen.get(index, "")
        consistent = seen.startswith(full) or full.startswith(seen)
        if not consistent or (finish_reason and len(full) < len(seen)):
            return self._restart() + self._replay_attempt()
        out = full[self.emitted.get(index, 0):] if len(full) > self.emitted.get(index, 0) else ""
        self.emitted[index] = max(self.emitted.get(index, 0), len(full))
        if finish_reason and self.seen_finish.get(index) == finish_reason and not out:
            finish_reason = None  # the end of this choice is on the stream already
        return [self._token(index, out, finish_reason)] if out or finish_reason else []

    def _restart(self) -> list[StreamChunk]:
        self.fresh = True
        return [StreamChunk(job_id=self.job_id, event="restart", attempt=self.attempt)]

    def _replay_attempt(self) -> list[StreamChunk]:
        """After a late restart: this attempt's text so far, one chunk per choice."""
        return [self._token(i, t, self.finishes.get(i)) for i, t in sorted(self.texts.items())
                if t or self.finishes.get(i)]

    def _token(self, index: int, text: str, finish_reason: str | None) -> StreamChunk:
        return StreamChunk(job_id=self.job_id, delta=text, index=index, finish_reason=finish_reason)
