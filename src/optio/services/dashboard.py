"""What the dashboard's overview and costs pages show, read in one transaction each."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from optio.store import dashboard as dash_store
from optio.store.dashboard import Spend
from optio.store.db import Database

__all__ = ["CostReport", "Overview", "Spend", "cost_report", "overview"]


@dataclass(frozen=True)
class Overview:
    counts: dict[str, dict[str, int]]
    running_tasks: list[tuple[Any, str]]
    running_jobs: list[tuple[Any, str]]
    attention: list[tuple[Any, str]]
    queue_depth: int
    cost_today: float
    cost_week: float
    cost_imputed: bool
    merges: list[tuple[Any, str]]


def _day_start(now: datetime) -> datetime:
    return datetime(now.year, now.month, now.day, tzinfo=UTC)


def overview(db: Database, workspace_id: int, now: datetime | None = None) -> Overview:
    """Counts by state, who runs now, what needs a person (with why), queue depth, spend (UTC days), merges."""
    now = now or datetime.now(UTC)
    today = _day_start(now)
    week = today - timedelta(days=today.weekday())
    with db.read() as session:
        spend = dash_store.spend_since(session, workspace_id, min(week, today))
        return Overview(
            counts=dash_store.state_counts(session, workspace_id),
            running_tasks=dash_store.running_tasks(session, workspace_id),
            running_jobs=dash_store.running_job_runs(session, workspace_id),
            attention=dash_store.attention(session, workspace_id),
            queue_depth=dash_store.queue_depth(session, workspace_id),
            cost_today=sum(s.cost_usd for s in spend if s.created_at >= today),
            cost_week=sum(s.cost_usd for s in spend),
            cost_imputed=any(s.cost_imputed for s in spend),
            merges=dash_store.recent_merges(session, workspace_id),
        )


@dataclass
class Bucket:
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    runs: int = 0
    imputed: bool = False

    def add(self, s: Spend) -> None:
        self.cost_usd += s.cost_usd
        self.input_tokens += s.input_tokens
        self.output_tokens += s.output_tokens
        self.runs += 1
        self.imputed = self.imputed or s.cost_imputed


@dataclass
class CostReport:
    """Spend per UTC day, by repo, by job and by agent type; `imputed` marks sums with price-table costs."""

    days: int
    total: Bucket = field(default_factory=Bucket)
    by_day: dict[date, Bucket] = field(default_factory=lambda: defaultdict(Bucket))
    by_repo: dict[tuple[date, str], Bucket] = field(default_factory=lambda: defaultdict(Bucket))
    by_job: dict[tuple[date, str], Bucket] = field(default_factory=lambda: defaultdict(Bucket))
    by_agent: dict[tuple[date, str], Bucket] = field(default_factory=lambda: defaultdict(Bucket))
    first_day: date | None = None

    def series(self) -> list[tuple[date, Bucket]]:
        """Every day of the period, oldest first, the days nothing was spent included (for the chart)."""
        if self.first_day is None:
            return []
        days = [self.first_day + timedelta(days=i) for i in range(self.days)]
        return [(d, self.by_day.get(d) or Bucket()) for d in days]


def cost_report(db: Database, workspace_id: int, days: int = 30, now: datetime | None = None) -> CostReport:
    now = now or datetime.now(UTC)
    since = _day_start(now) - timedelta(days=days - 1)
    with db.read() as session:
        spend = dash_store.spend_since(session, workspace_id, since)
    report = CostReport(days=days, first_day=since.date())
    for s in sorted(spend, key=lambda s: s.created_at, reverse=True):
        day = s.created_at.astimezone(UTC).date()
        report.total.add(s)
        report.by_day[day].add(s)
        report.by_agent[(day, s.agent_type)].add(s)
        if s.repo is not None:
            report.by_repo[(day, s.repo)].add(s)
        if s.job is not None:
            report.by_job[(day, s.job)].add(s)
    return report
