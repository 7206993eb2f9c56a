"""Usage counters per API key and model for the API's /metrics, read from Redis at scrape time (every API process
answers the same numbers). They count since the start of the Redis data, never reset by the day."""

from __future__ import annotations

from typing import Iterator

import redis
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from maoocr.store.usage import UsageStore, split_field


class UsageCollector(Collector):
    def __init__(self, client: redis.Redis) -> None:
        self.usage = UsageStore(client)

    def collect(self) -> Iterator[Metric]:
        tokens = CounterMetricFamily("maoocr_usage_tokens", "Tokens of ended generation jobs, by API key id, model "
                                     "and kind (prompt, completion)", labels=["owner", "model", "kind"])
        requests = CounterMetricFamily("maoocr_usage_requests", "Generation jobs that ended, by API key id and model",
                                       labels=["owner", "model"])
        documents = CounterMetricFamily("maoocr_usage_documents", "OCR jobs that ended, by API key id",
                                        labels=["owner"])
        pages = CounterMetricFamily("maoocr_usage_pages", "Pages those OCR jobs processed, by API key id",
                                    labels=["owner"])
        for owner, counters in sorted(self.usage.totals().items()):
            for field, n in sorted(counters.items()):
                model, counter = split_field(field)
                if counter == "documents" and model is None:
                    documents.add_metric([owner], n)
                elif counter == "pages" and model is None:
                    pages.add_metric([owner], n)
                elif counter == "requests":
                    requests.add_metric([owner, model], n)
                elif counter in ("prompt_tokens", "completion_tokens"):
                    tokens.add_metric([owner, model, counter.removesuffix("_tokens")], n)
        yield from (tokens, requests, documents, pages)
