"""Prometheus metrics: counters and histograms moved where things happen, gauges read from the database.

Counters live in one registry of their own (not the client's global one), so an embedding process or a
test that builds several apps never registers a name twice. What is true of the database as a whole
(queue depth and age, runs by state) is read when Prometheus scrapes, through a collector, so every replica
answers the same and nothing is kept in memory that a restart would lose.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "AGENT_ATTEMPTS",
    "AGENT_EXITS",
    "CI_SECONDS",
    "CONTENT_TYPE",
    "DECISIONS",
    "FORGE_CALLS",
    "FORGE_WAITS",
    "LOG_LINES",
    "MERGE_SECONDS",
    "REGISTRY",
    "RESUMES",
    "DatabaseFacts",
    "forge_call",
    "render",
]

REGISTRY = CollectorRegistry(auto_describe=True)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Latencies of CI and merges run from seconds to many minutes.
_SLOW_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

DECISIONS = Counter("optio_decisions_total", "Reconcile decisions applied, by run kind, action and outcome",
                    ("kind", "action", "outcome"), registry=REGISTRY)
AGENT_ATTEMPTS = Counter("optio_agent_attempts_total", "Agent processes launched, by run kind",
                         ("kind",), registry=REGISTRY)
AGENT_EXITS = Counter("optio_agent_exits_total",
                      "Agent processes ended, by run kind and classification (success, a failure kind, lost...)",
                      ("kind", "classification"), registry=REGISTRY)
RESUMES = Counter("optio_resumes_total", "Agents resumed on their run, by reason (ci, review, conflicts...)",
                  ("kind", "reason"), registry=REGISTRY)
CI_SECONDS = Histogram("optio_ci_seconds", "Local-forge CI runs, by result", ("result",),
                       buckets=_SLOW_BUCKETS, registry=REGISTRY)
MERGE_SECONDS = Histogram("optio_merge_seconds", "Merging a PR onto its base, by forge and result",
                          ("forge", "result"), buckets=_SLOW_BUCKETS, registry=REGISTRY)
FORGE_CALLS = Counter("optio_forge_api_calls_total", "Calls to a hosted forge's API, by forge and outcome",
                      ("forge", "outcome"), registry=REGISTRY)
FORGE_WAITS = Counter("optio_forge_rate_limit_waits_total",
                      "Reconciles put off because a forge was rate-limited or unavailable", registry=REGISTRY)
LOG_LINES = Counter("optio_log_lines_ingested_total", "Agent output lines stored in run logs", registry=REGISTRY)


@dataclass(frozen=True)
class DatabaseFacts:
    """What one scrape reads from the database."""

    queue_depth: int
    queue_due: int
    oldest_due_age_s: float
    runs_by_state: tuple[tuple[str, str, int], ...]


class _DatabaseCollector(Collector):
    def __init__(self, read: Callable[[], DatabaseFacts]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        facts = self._read()
        yield GaugeMetricFamily("optio_queue_depth", "Reconcile queue entries", value=facts.queue_depth)
        yield GaugeMetricFamily("optio_queue_due", "Reconcile queue entries that are due now", value=facts.queue_due)
        yield GaugeMetricFamily("optio_queue_oldest_due_age_seconds",
                                "How long the oldest due queue entry has waited", value=facts.oldest_due_age_s)
        runs = GaugeMetricFamily("optio_runs", "Runs by kind and state", labels=("kind", "state"))
        for kind, state, count in facts.runs_by_state:
            runs.add_metric((kind, state), count)
        yield runs


def render(read: Callable[[], DatabaseFacts]) -> bytes:
    """The text exposition of every counter plus a fresh reading of the database."""
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(_DatabaseCollector(read))
    return generate_latest(REGISTRY) + generate_latest(scrape)


@contextmanager
def forge_call(forge: str) -> Iterator[None]:
    """Count one call to a hosted forge's API by how it ended: ok, busy (a "not now" that carries a
    retry-after: rate limit, 5xx, unreachable) or error; an exception may name its own outcome in
    `metrics_outcome` (a cache's "not modified")."""
    try:
        yield
    except BaseException as exc:
        outcome = getattr(exc, "metrics_outcome", None) or (
            "busy" if getattr(exc, "retry_after_s", None) is not None else "error")
        FORGE_CALLS.labels(forge, outcome).inc()
        raise
    FORGE_CALLS.labels(forge, "ok").inc()
