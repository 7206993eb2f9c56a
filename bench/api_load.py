"""P1's load generator: one round of `POST /api/generate` requests, fired at one agreed moment from several client
processes, each with a thread per client slot of its share. A slot sends its jobs one after another, each when the
previous one is answered: one job per slot is a burst, several keep that many jobs in flight (sustained load).

From one process (hundreds of `requests` threads on one GIL) a round's jobs would arrive spread out by the client's
own Python, not the queue. Real load comes from many clients.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass

import requests

START_DELAY_S = 1.0  # every client process has its threads waiting before the round starts

Job = tuple[str, int]  # prompt, max_tokens


@dataclass
class RoundResult:
    seconds: float  # from the agreed start to the last reply
    tokens: int
    failed: int
    job_ids: list[str]


class LoadGenerator:
    def __init__(self, base_url: str, processes: int) -> None:
        self.base_url = base_url
        self.processes = max(1, processes)
        # spawn: the benchmark process holds an engine (CUDA, threads) that a forked child must not inherit
        self.pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"))
        for future in [self.pool.submit(time.sleep, 0.2) for _ in range(self.processes)]:
            future.result()  # all processes started (each took one) before the first round

    def round(self, texts: list[str], max_tokens: int) -> RoundResult:
        """A burst: every prompt sent at once."""
        return self.slots([[(text, max_tokens)] for text in texts])

    def slots(self, slots: list[list[Job]]) -> RoundResult:
        """Every slot starts at once and sends its jobs one after another."""
        start_at, futures = self.fire(slots)
        parts = [future.result() for future in futures]
        errors = [e for part in parts for e in part[2]]
        if errors:  # counted and reported with the figures, not hidden and not fatal to the run
            print(json.dumps({"metric": "p1_api_failed_requests", "value": len(errors), "first": errors[0]}),
                  file=sys.stderr, flush=True)
        return RoundResult(seconds=max(part[3] for part in parts) - start_at, tokens=sum(part[0] for part in parts),
                           failed=len(errors), job_ids=[j for part in parts for j in part[1]])

    def fire(self, slots: list[list[Job]]) -> tuple[float, list[Future]]:
        """Start a round without waiting for it: the agreed start time, and a future per client process whose
        result is `(tokens, job ids, errors, last reply time)`."""
        start_at = time.time() + START_DELAY_S
        shares = [slots[i::self.processes] for i in range(self.processes)]
        return start_at, [self.pool.submit(fire, self.base_url, share, start_at) for share in shares if share]

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


_session: requests.Session | None = None  # one per client process, kept across rounds


def fire(base_url: str, slots: list[list[Job]], start_at: float) -> tuple[int, list[str], list[str], float]:
    """In a client process: every slot of its share from `start_at`; (tokens, job ids, errors, last reply time)."""
    global _session
    if _session is None:
        _session = requests.Session()
        _session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=4096))
    session = _session
    job_ids: list[str] = []
    errors: list[str] = []

    def one(prompt: str, max_tokens: int) -> int:
        try:
            reply = session.post(base_url + "/api/generate", timeout=1200, json={
                "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True, "wait": True})
            reply.raise_for_status()
            body = reply.json()
            job_ids.append(body["job_id"])
            return body["usage"]["completion_tokens"]
        except (requests.RequestException, KeyError, ValueError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:300])
            return 0

    def slot(jobs: list[Job]) -> int:
        time.sleep(max(0.0, start_at - time.time()))
        return sum(one(prompt, max_tokens) for prompt, max_tokens in jobs)

    with ThreadPoolExecutor(len(slots)) as pool:
        tokens = sum(pool.map(slot, slots))
    return tokens, job_ids, errors, time.time()
