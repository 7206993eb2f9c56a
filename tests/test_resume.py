"""A generation run again after its worker died: subscribers never see a token twice without a `restart` first."""

from __future__ import annotations

from maoocr.generation.resume import Resume
from maoocr.protocol.generation import GenerationParams, StreamChunk


def params(**kw) -> GenerationParams:
    return GenerationParams(model="tiny", prompt="hi", **kw)


def seen_record(*deltas: str, finish: str | None = None) -> list[StreamChunk]:
    chunks = [StreamChunk(job_id="j", seq=i, delta=d) for i, d in enumerate(deltas)]
    if finish:
        chunks[-1] = chunks[-1].model_copy(update={"finish_reason": finish})
    return chunks


def published(resume: Resume, deltas: list[tuple[str, str | None]]) -> list[StreamChunk]:
    out = resume.start()
    for text, finish in deltas:
        out += resume.feed(0, text, finish)
    return out


def text_after_last_restart(record: list[StreamChunk]) -> str:
    starts = [i for i, c in enumerate(record) if c.event == "restart"]
    return "".join(c.delta for c in record[(starts[-1] + 1 if starts else 0):] if c.event == "token")


def test_a_seeded_job_continues_where_the_dead_attempt_stopped():
    before = seen_record("The ", "cat ")
    resume = Resume.from_record("j", 2, params(seed=7), before)
    out = published(resume, [("The ", None), ("cat ", None), ("sat", None), (".", "length")])
    assert [c.event for c in out] == ["token", "token"]
    assert [c.delta for c in out] == ["sat", "."] and out[-1].finish_reason == "length"
    assert text_after_last_restart(before + out) == "The cat sat."


def test_a_delta_straddling_what_was_seen_publishes_only_the_new_part():
    resume = Resume.from_record("j", 2, params(temperature=0), seen_record("ab", "c"))
    out = published(resume, [("a", None), ("bcde", None)])
    assert [c.delta for c in out] == ["de"]


def test_a_departing_seeded_attempt_restarts_the_stream_with_its_whole_text():
    before = seen_record("The ", "cat ")
    resume = Resume.from_record("j", 3, params(seed=7), before)
    out = published(resume, [("The ", None), ("dog ", None), ("ran", "stop")])
    assert out[0].event == "restart" and out[0].attempt == 3
    assert text_after_last_restart(before + out) == "The dog ran"
    assert out[-1].finish_reason == "stop"


def test_an_attempt_ending_before_what_was_seen_restarts():
    resume = Resume.from_record("j", 2, params(seed=1), seen_record("abc", "def"))
    out = published(resume, [("abc", "stop")])
    assert out[0].event == "restart" and text_after_last_restart(out) == "abc" and out[-1].finish_reason == "stop"


def test_a_freely_sampled_job_says_restart_before_anything_else():
    before = seen_record("x", "y")
    resume = Resume.from_record("j", 2, params(temperature=1.0), before)
    out = published(resume, [("p", None), ("q", "length")])
    assert [c.event for c in out] == ["restart", "token", "token"]
    assert text_after_last_restart(before + out) == "pq"


def test_nothing_seen_means_no_restart_marker():
    resume = Resume.from_record("j", 2, params(temperature=1.0), [])
    out = published(resume, [("p", None), ("q", "stop")])
    assert [c.delta for c in out] == ["p", "q"] and all(c.event == "token" for c in out)


def test_only_text_since_the_last_restart_counts_as_seen():
    record = seen_record("old") + [StreamChunk(job_id="j", seq=1, event="restart", attempt=2),
                                   StreamChunk(job_id="j", seq=2, delta="new")]
    resume = Resume.from_record("j", 3, params(seed=1), record)
    out = published(resume, [("new", None), ("er", "stop")])
    assert [c.delta for c in out] == ["er"]
    assert text_after_last_restart(record + out) == "newer"


def test_a_finish_already_on_the_stream_is_not_repeated():
    resume = Resume.from_record("j", 2, params(seed=1), seen_record("ab", finish="stop"))
    assert published(resume, [("ab", "stop")]) == []
