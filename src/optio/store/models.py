"""SQLAlchemy models. Every table holding a user's resources carries `workspace_id`.

Run tables share one set of reconcile columns (version for compare-and-swap, control intent, backoff)
so the control plane can treat every run kind the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

from optio.store.types import UTCDateTime, utcnow


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Workspace(Timestamps, Base):
    __tablename__ = "workspaces"
    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))


class WorkspaceScoped:
    @declared_attr
    def workspace_id(cls) -> Mapped[int]:
        return mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)


class RunColumns(WorkspaceScoped, Timestamps):
    """Columns every run kind has; the reconciler reads and CAS-writes these."""

    state: Mapped[str] = mapped_column(String(32), index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    control_intent: Mapped[str | None] = mapped_column(String(32), default=None)
    reconcile_backoff_until: Mapped[datetime | None] = mapped_column(default=None)
    reconcile_attempts: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    cost_imputed: Mapped[bool] = mapped_column(Boolean, default=False)
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    # The executor's last failure applying a decision, and how many times in a row that same failure
    # happened: the decision gives the run up after a bound, so no input can make it retry forever.
    executor_error_action: Mapped[str | None] = mapped_column(String(32), default=None)
    executor_error: Mapped[str | None] = mapped_column(Text, default=None)
    executor_error_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    executor_error_at: Mapped[datetime | None] = mapped_column(default=None)
    # Bytes of output stored for the run, and dropped past OPTIO_MAX_RUN_LOG_BYTES.
    log_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    log_dropped_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class Job(WorkspaceScoped, Timestamps, Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("workspace_id", "name", name="uq_jobs_workspace_name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    prompt_template: Mapped[str] = mapped_column(Text)
    agent_type: Mapped[str] = mapped_column(String(64))
    agent_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    params_schema: Mapped[dict[str, Any]] = mapped_column(default=dict)
    max_retries: Mapped[int] = mapped_column(Integer, default=0)
    max_concurrent_runs: Mapped[int | None] = mapped_column(Integer, default=None)
    budget_usd: Mapped[float | None] = mapped_column(Float, default=None)
    timeout_s: Mapped[float | None] = mapped_column(Float, default=None)
    secret_names: Mapped[list[Any]] = mapped_column(default=list)


def _listing_indexes(table: str, *, by_id: bool = True) -> tuple[Index, ...]:
    """What a run table's lists need, each scoped to one workspace: newest first by id (optionally of one state),
    and newest first by creation time (optionally of one state), the task feed's order. Keyset pages read
    straight off these, with no sort."""
    created = (Index(f"ix_{table}_ws_created", "workspace_id", "created_at", "id"),
               Index(f"ix_{table}_ws_state_created", "workspace_id", "state", "created_at", "id"))
    return ((Index(f"ix_{table}_ws_state_id", "workspace_id", "state", "id"),) if by_id else ()) + created


class JobRun(RunColumns, Base):
    __tablename__ = "job_runs"
    __table_args__ = _listing_indexes("job_runs")
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prompt: Mapped[str] = mapped_column(Text)
    # Who asked for the run (None: Optio itself); named in the audit row of every secret injected into it.
    created_by: Mapped[int | None] = mapped_column(Integer, default=None)


class RunEvent(WorkspaceScoped, Base):
    """Every state transition (and notable non-transition event) of a run, with its reason."""

    __tablename__ = "run_events"
    __table_args__ = (Index("ix_run_events_run", "run_kind", "run_id", "id"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_kind: Mapped[str] = mapped_column(String(32))
    run_id: Mapped[int] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(64))
    from_state: Mapped[str | None] = mapped_column(String(32))
    to_state: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RunLog(WorkspaceScoped, Base):
    """Ordered output of a run's agent processes; `seq` is dense per run, starting at 1."""

    __tablename__ = "run_logs"
    __table_args__ = (UniqueConstraint("run_kind", "run_id", "seq", name="uq_run_logs_seq"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_kind: Mapped[str] = mapped_column(String(32))
    run_id: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    stream: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AgentProcess(WorkspaceScoped, Base):
    """One launched agent process: enough to re-adopt it after a server restart, or know it is gone."""

    __tablename__ = "agent_processes"
    __table_args__ = (Index("ix_agent_processes_run", "run_kind", "run_id", "attempt"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(128), unique=True)
    run_kind: Mapped[str] = mapped_column(String(32))
    run_id: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    purpose: Mapped[str] = mapped_column(String(16), default="agent")
    agent_type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)
    pid: Mapped[int | None] = mapped_column(Integer, default=None)
    start_time: Mapped[float | None] = mapped_column(Float, default=None)
    log_dir: Mapped[str] = mapped_column(Text)
    stdout_offset: Mapped[int] = mapped_column(BigInteger, default=0)
    stderr_offset: Mapped[int] = mapped_column(BigInteger, default=0)
    exit_code: Mapped[int | None] = mapped_column(Integer, default=None)
    exit_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    failure_kind: Mapped[str | None] = mapped_column(String(32), default=None)
    retry_after_s: Mapped[float | None] = mapped_column(Float, default=None)
    timeout_at: Mapped[float | None] = mapped_column(Float, default=None)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    last_output_at: Mapped[datetime | None] = mapped_column(default=None)
    # The replica watching it (tailing its output, reporting its exit); another adopts it once that one's
    # lease has run out. None: a process of a server from before replicas, anyone's to adopt.
    owner: Mapped[str | None] = mapped_column(String(128), default=None, index=True)


class ReconcileItem(Base):
    """The durable reconcile queue: one row per (kind, run_id), deduplicated.

    `generation` grows on every enqueue, so a worker that finishes an item only deletes it if nobody
    enqueued it again meanwhile: an event that arrives during processing is never lost.
    """

    __tablename__ = "reconcile_queue"
    __table_args__ = (
        UniqueConstraint("kind", "run_id", name="uq_reconcile_queue_run"),
        Index("ix_reconcile_queue_ready", "not_before"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    run_id: Mapped[int] = mapped_column(Integer)
    workspace_id: Mapped[int] = mapped_column(Integer)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    not_before: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(default=None)
    claimed_by: Mapped[str | None] = mapped_column(String(64), default=None)
    reason: Mapped[str] = mapped_column(String(200), default="")
    enqueued_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- repos, repo tasks and the local forge -------------------------------------------------------------


class ForgeDelivery(Base):
    """A forge webhook delivery already handled: a redelivery with the same id (per repo) does nothing."""

    __tablename__ = "forge_deliveries"
    __table_args__ = (UniqueConstraint("repo_id", "delivery_id", name="uq_forge_delivery"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"))
    delivery_id: Mapped[str] = mapped_column(String(200))
    event: Mapped[str] = mapped_column(String(100), default="", server_default="")
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Repo(WorkspaceScoped, Timestamps, Base):
    __tablename__ = "repos"
    __table_args__ = (UniqueConstraint("workspace_id", "name", name="uq_repos_workspace_name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    remote_url: Mapped[str] = mapped_column(Text)
    forge: Mapped[str] = mapped_column(String(32), default="local")
    default_branch: Mapped[str] = mapped_column(String(200), default="main")
    ci_command: Mapped[str | None] = mapped_column(Text, default=None)
    require_approval: Mapped[bool] = mapped_column(Boolean, default=False)
    auto_merge: Mapped[bool] = mapped_column(Boolean, default=True)
    max_concurrent: Mapped[int | None] = mapped_column(Integer, default=None)
    agent_type: Mapped[str] = mapped_column(String(64), default="script")
    agent_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    review_agent_type: Mapped[str | None] = mapped_column(String(64), default=None)
    review_agent_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    review_prompt: Mapped[str] = mapped_column(Text, default="")
    secret_names: Mapped[list[Any]] = mapped_column(default=list)
    # Name of the secret (workspace or repo scope) Optio's own git authenticates to the remote with; never the
    # operator's credential helpers or ssh keys.
    credential_secret: Mapped[str | None] = mapped_column(String(200), default=None)
    # A hosted forge's API root (GitHub Enterprise, self-managed GitLab); None: the forge's public default.
    api_url: Mapped[str | None] = mapped_column(Text, default=None)
    # Name of the secret webhook deliveries to this repo are verified with (HMAC key or GitLab token).
    webhook_secret: Mapped[str | None] = mapped_column(String(200), default=None)
    # Forge-specific settings, e.g. GitHub App auth {"app_id", "installation_id", "private_key_secret"}, "draft".
    forge_options: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    next_pr_number: Mapped[int] = mapped_column(Integer, default=1)
    # A vendor rate-limited one of this repo's agents: until then, run one agent at a time.
    rate_limited_until: Mapped[datetime | None] = mapped_column(default=None)


class RepoTask(RunColumns, Base):
    __tablename__ = "repo_tasks"
    __table_args__ = _listing_indexes("repo_tasks")
    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(500))
    prompt: Mapped[str] = mapped_column(Text)
    agent_type: Mapped[str] = mapped_column(String(64))
    agent_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    max_retries: Mapped[int] = mapped_column(Integer, default=1)
    resume_count: Mapped[int] = mapped_column(Integer, default=0)
    # Resumes a person asked for (a `resume` intent, a person's requested changes): not counted in
    # `resume_count`, which the automatic resume cap (OPTIO_MAX_AUTO_RESUMES) applies to.
    human_resumes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    resume_keys: Mapped[list[Any]] = mapped_column(default=list)
    branch: Mapped[str | None] = mapped_column(String(300), default=None)
    worktree_path: Mapped[str | None] = mapped_column(Text, default=None)
    worktree_ready: Mapped[bool] = mapped_column(Boolean, default=False)
    provisioning_since: Mapped[datetime | None] = mapped_column(default=None)
    agent_session_id: Mapped[str | None] = mapped_column(String(200), default=None)
    pr_id: Mapped[int | None] = mapped_column(Integer, default=None)
    note: Mapped[str | None] = mapped_column(Text, default=None)
    ticket_ref: Mapped[str | None] = mapped_column(String(300), default=None)
    secret_names: Mapped[list[Any]] = mapped_column(default=list)
    # Who asked for the task (None: Optio itself); named in the audit row of every secret injected into it.
    created_by: Mapped[int | None] = mapped_column(Integer, default=None)
    # Review and merge settings that replace the repo's for this task (a blueprint's; see domain/review_policy.py).
    review_settings: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")


class TaskDependency(WorkspaceScoped, Base):
    __tablename__ = "task_dependencies"
    __table_args__ = (UniqueConstraint("task_id", "depends_on_id", name="uq_task_dependency"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("repo_tasks.id", ondelete="CASCADE"), index=True)
    depends_on_id: Mapped[int] = mapped_column(ForeignKey("repo_tasks.id", ondelete="CASCADE"), index=True)


class PullRequest(WorkspaceScoped, Timestamps, Base):
    """A pull request on the local forge (the GitHub/GitLab adapters keep theirs on the forge)."""

    __tablename__ = "pull_requests"
    __table_args__ = (UniqueConstraint("repo_id", "number", name="uq_pull_requests_number"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), index=True)
    task_id: Mapped[int | None] = mapped_column(Integer, default=None, index=True)
    number: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text, default="")
    head_branch: Mapped[str] = mapped_column(String(300))
    head_sha: Mapped[str] = mapped_column(String(64))
    base_branch: Mapped[str] = mapped_column(String(200))
    base_sha: Mapped[str | None] = mapped_column(String(64), default=None)
    state: Mapped[str] = mapped_column(String(16), default="open", index=True)
    mergeable: Mapped[bool | None] = mapped_column(Boolean, default=None)
    conflicting_files: Mapped[list[Any]] = mapped_column(default=list)
    merged_sha: Mapped[str | None] = mapped_column(String(64), default=None)
    merged_at: Mapped[datetime | None] = mapped_column(default=None)
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    # Set while the PR waits in its base branch's merge queue to be re-tested on the moved base.
    merge_queued_at: Mapped[datetime | None] = mapped_column(default=None)
    # The squash message asked for when it joined the queue: a batch that lands it lists it.
    merge_message: Mapped[str | None] = mapped_column(Text, default=None)


class MergeBatch(WorkspaceScoped, Base):
    """Several queued PRs of one base branch tested together: their heads merged in order onto one base tip.

    CI runs once on that merge; green, the batch lands as one commit with exactly the tested tree. A red
    batch is bisected: its halves become "planned" batches (no base yet) tested in queue order, down to
    the single PR whose merge fails. Statuses: planned, pending, passing, failing, error (CI ran), then
    landed, bisected, single (a half of one PR, handed to the serial queue) or dropped (a member left the
    queue, or the base moved).
    """

    __tablename__ = "merge_batches"
    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), index=True)
    base_branch: Mapped[str] = mapped_column(String(200))
    base_sha: Mapped[str | None] = mapped_column(String(64), default=None)
    pr_ids: Mapped[list[Any]] = mapped_column(default=list)
    head_shas: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(16), default="planned", index=True)
    tested_sha: Mapped[str | None] = mapped_column(String(64), default=None)
    merged_sha: Mapped[str | None] = mapped_column(String(64), default=None)
    exit_code: Mapped[int | None] = mapped_column(Integer, default=None)
    output: Mapped[str] = mapped_column(Text, default="")
    duration_s: Mapped[float | None] = mapped_column(Float, default=None)
    failure_kind: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class CiRun(WorkspaceScoped, Base):
    """The repo's CI command run on the merge of one PR head onto one base tip, in a clean checkout.

    A result holds for the pair (head, base) only: once the base moves, what would land is another tree.
    `tested_sha` is the test merge commit CI actually ran on (its tree is what a squash onto `base_sha` lands).
    """

    __tablename__ = "ci_runs"
    __table_args__ = (UniqueConstraint("pr_id", "head_sha", "base_sha", name="uq_ci_runs_head_base"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    pr_id: Mapped[int] = mapped_column(ForeignKey("pull_requests.id", ondelete="CASCADE"), index=True)
    head_sha: Mapped[str] = mapped_column(String(64))
    base_sha: Mapped[str | None] = mapped_column(String(64), default=None)
    tested_sha: Mapped[str | None] = mapped_column(String(64), default=None)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    exit_code: Mapped[int | None] = mapped_column(Integer, default=None)
    output: Mapped[str] = mapped_column(Text, default="")
    duration_s: Mapped[float | None] = mapped_column(Float, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    # With status "error": why the command could not test the code at all (see optio.forge.ci_setup).
    failure_kind: Mapped[str | None] = mapped_column(String(32), default=None)


class PrReview(WorkspaceScoped, Base):
    """A review on a PR: from a person (API/CLI) or from a review agent run."""

    __tablename__ = "pr_reviews"
    id: Mapped[int] = mapped_column(primary_key=True)
    pr_id: Mapped[int] = mapped_column(ForeignKey("pull_requests.id", ondelete="CASCADE"), index=True)
    head_sha: Mapped[str] = mapped_column(String(64))
    verdict: Mapped[str] = mapped_column(String(32))
    comments: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReviewRun(RunColumns, Base):
    """A review agent run (run kind `pr_review`) on one PR head."""

    __tablename__ = "review_runs"
    __table_args__ = _listing_indexes("review_runs", by_id=False)
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("repo_tasks.id", ondelete="CASCADE"), index=True)
    # The local forge's PR row; a hosted forge keeps its PRs itself, so its reviews name the repo and number.
    pr_id: Mapped[int | None] = mapped_column(ForeignKey("pull_requests.id", ondelete="CASCADE"), index=True,
                                              default=None)
    repo_id: Mapped[int | None] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), default=None)
    number: Mapped[int | None] = mapped_column(default=None)
    head_sha: Mapped[str] = mapped_column(String(64))
    agent_type: Mapped[str] = mapped_column(String(64))
    agent_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prompt: Mapped[str] = mapped_column(Text)
    verdict: Mapped[str | None] = mapped_column(String(32), default=None)
    comments: Mapped[str | None] = mapped_column(Text, default=None)
    worktree_path: Mapped[str | None] = mapped_column(Text, default=None)


# --- people, credentials, secrets and the audit trail ----------------------------------------------------


class User(Timestamps, Base):
    """A person or automation identity. Credentials live in their own tables, never here in usable form."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("oidc_issuer", "oidc_subject", name="uq_users_oidc"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(200), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str | None] = mapped_column(String(320), default=None)
    password_hash: Mapped[str | None] = mapped_column(Text, default=None)
    oidc_issuer: Mapped[str | None] = mapped_column(String(500), default=None)
    oidc_subject: Mapped[str | None] = mapped_column(String(255), default=None)
    default_workspace_id: Mapped[int | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="SET NULL"), default=None
    )
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # A server administrator creates users and resets passwords; workspace admins only manage roles.
    is_server_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Membership(WorkspaceScoped, Timestamps, Base):
    """A user's role in one workspace: admin, member or viewer."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("workspace_id", "user_id", name="uq_memberships_user"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))


class ApiKey(Base):
    """A personal API key: only its SHA-256 digest and a display prefix are kept."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class WebSession(Base):
    """A browser session; the cookie holds the token, the table its digest."""

    __tablename__ = "web_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    last_seen_at: Mapped[datetime | None] = mapped_column(default=None)


class Secret(WorkspaceScoped, Timestamps, Base):
    """A workspace- or repo-scoped secret, sealed with AES-256-GCM; `scope_key` makes names unique per scope."""

    __tablename__ = "secrets"
    __table_args__ = (UniqueConstraint("workspace_id", "scope_key", "name", name="uq_secrets_scope_name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))
    repo_id: Mapped[int | None] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), default=None,
                                                index=True)
    scope_key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    ciphertext: Mapped[str] = mapped_column(Text)
    key_version: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)


class AuditEvent(WorkspaceScoped, Base):
    """Who did what, in which workspace, when."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_ws", "workspace_id", "id"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(Integer, default=None)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100), index=True)
    target_type: Mapped[str] = mapped_column(String(64), default="")
    target_id: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Ticket(WorkspaceScoped, Timestamps, Base):
    """An issue on the local tracker: the embedded stand-in for GitHub Issues, Linear or Jira."""

    __tablename__ = "tickets"
    __table_args__ = (UniqueConstraint("workspace_id", "number", name="uq_tickets_number"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[int] = mapped_column(Integer)
    repo_id: Mapped[int | None] = mapped_column(ForeignKey("repos.id", ondelete="SET NULL"), default=None)
    title: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16), default="open", index=True)
    task_id: Mapped[int | None] = mapped_column(Integer, default=None)
    closed_reason: Mapped[str | None] = mapped_column(Text, default=None)
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    labels: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")


class TicketComment(WorkspaceScoped, Base):
    """A comment on a local ticket (Optio's pick-up, PR and merge notes, or a person's)."""

    __tablename__ = "ticket_comments"
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    author: Mapped[str] = mapped_column(String(200), default="optio")
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TicketSource(WorkspaceScoped, Timestamps, Base):
    """A tracker work arrives from: its kind (github, gitlab, linear, jira, notion, local), API root (through
    the SSRF guard), the provider's own options, the named secret holding its credential and the sealed secret
    its webhook deliveries are verified with."""

    __tablename__ = "ticket_sources"
    __table_args__ = (UniqueConstraint("workspace_id", "name", name="uq_ticket_sources_workspace_name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    api_url: Mapped[str] = mapped_column(Text, default="")
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    credential_secret: Mapped[str | None] = mapped_column(String(200), default=None)
    webhook_secret_ciphertext: Mapped[str | None] = mapped_column(Text, default=None)
    last_polled_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


class TicketLink(WorkspaceScoped, Base):
    """One provider ticket and the task it spawned. Unique by (source, external id) and inserted in the
    transaction that creates the task: a ticket spawns at most one task, whatever arrives twice."""

    __tablename__ = "ticket_links"
    __table_args__ = (UniqueConstraint("source_id", "external_id", name="uq_ticket_links_external"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("ticket_sources.id", ondelete="CASCADE"), index=True)
    external_id: Mapped[str] = mapped_column(String(200))
    trigger_id: Mapped[int | None] = mapped_column(Integer, default=None)
    task_id: Mapped[int] = mapped_column(Integer, index=True)
    key: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(Text, default="")
    title: Mapped[str] = mapped_column(String(500), default="")
    # Lifecycle notes delivered to the tracker so far: picked_up, pr_opened, merged.
    posted: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TicketAction(WorkspaceScoped, Base):
    """A comment or close owed to a tracker: an outbox row queued with the state change it reports, sent by
    the ticket thread with retries and backoff, so a tracker outage delays it and never the loop."""

    __tablename__ = "ticket_actions"
    __table_args__ = (UniqueConstraint("link_id", "event", name="uq_ticket_actions_event"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("ticket_links.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(default=None)


class Trigger(WorkspaceScoped, Timestamps, Base):
    """What starts work without a person: run now, a cron schedule, or a signed webhook, aimed at a target
    (`target_type` + `target_id`: a job today). `last_due_at` is the schedule's latest claimed due time, the
    point the next one is counted from; `version` makes every change a compare-and-swap."""

    __tablename__ = "triggers"
    id: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(16))
    target_type: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[int] = mapped_column(Integer, index=True)
    cron: Mapped[str | None] = mapped_column(String(200), default=None)
    timezone: Mapped[str | None] = mapped_column(String(64), default=None)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    param_map: Mapped[dict[str, Any]] = mapped_column(default=dict)
    secret_ciphertext: Mapped[str | None] = mapped_column(Text, default=None)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    last_due_at: Mapped[datetime | None] = mapped_column(default=None)
    last_fired_at: Mapped[datetime | None] = mapped_column(default=None)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # A ticket trigger: the source it watches and which of its tickets it picks up (label, state, assignee,
    # project).
    source_id: Mapped[int | None] = mapped_column(ForeignKey("ticket_sources.id", ondelete="CASCADE"), default=None,
                                                  index=True)
    ticket_filter: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")


class TriggerFire(WorkspaceScoped, Base):
    """One firing and the run it started. A schedule's fire carries its due time, unique per trigger: two
    servers that both see the same tick insert the same row, and only one transaction commits."""

    __tablename__ = "trigger_fires"
    __table_args__ = (UniqueConstraint("trigger_id", "due_at", name="uq_trigger_fires_due"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    trigger_id: Mapped[int] = mapped_column(ForeignKey("triggers.id", ondelete="CASCADE"), index=True)
    due_at: Mapped[datetime | None] = mapped_column(default=None)
    source: Mapped[str] = mapped_column(String(16))
    run_kind: Mapped[str] = mapped_column(String(16))
    run_id: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Blueprint(WorkspaceScoped, Timestamps, Base):
    """A saved repo-task definition: title and prompt templates (filled from params and a trigger's payload),
    the agent and its config, the task's retry and priority settings and the secrets it may use."""

    __tablename__ = "blueprints"
    __table_args__ = (UniqueConstraint("workspace_id", "name", name="uq_blueprints_workspace_name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), index=True)
    title_template: Mapped[str] = mapped_column(Text)
    prompt_template: Mapped[str] = mapped_column(Text)
    agent_type: Mapped[str | None] = mapped_column(String(64), default=None)
    agent_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    params_schema: Mapped[dict[str, Any]] = mapped_column(default=dict)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    max_retries: Mapped[int] = mapped_column(Integer, default=1)
    secret_names: Mapped[list[Any]] = mapped_column(default=list)
    # Review and merge settings that replace the repo's for the tasks it spawns (see domain/review_policy.py).
    review_settings: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")


class NotificationWebhook(WorkspaceScoped, Timestamps, Base):
    """Where a workspace wants to hear about its work: a URL, a body format (`optio`: signed JSON like the
    incoming webhooks; `slack`: an incoming-webhook message) and the events it wants."""

    __tablename__ = "notification_webhooks"
    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(16), default="optio")
    events: Mapped[list[Any]] = mapped_column(default=list)
    secret_ciphertext: Mapped[str | None] = mapped_column(Text, default=None)


class NotificationDelivery(WorkspaceScoped, Base):
    """One event for one receiver, and the log of trying to deliver it: a durable queue of its own, so a
    dead receiver is retried with backoff and never holds up the reconcile loop."""

    __tablename__ = "notification_deliveries"
    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("notification_webhooks.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    last_status: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)


class McpServerDef(WorkspaceScoped, Timestamps, Base):
    """An MCP server every run of its scope gets (workspace, or one repo): a stdio command or an HTTP URL.

    ``env`` maps environment variable names to the NAMES of secrets, resolved when a run starts: no value
    is ever stored here.
    """

    __tablename__ = "mcp_servers"
    __table_args__ = (UniqueConstraint("workspace_id", "scope_key", "name", name="uq_mcp_servers_scope_name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[int | None] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), default=None,
                                                index=True)
    scope_key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    command: Mapped[str | None] = mapped_column(Text, default=None)
    args: Mapped[list[Any]] = mapped_column(default=list)
    url: Mapped[str | None] = mapped_column(Text, default=None)
    env: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)


class SkillDef(WorkspaceScoped, Timestamps, Base):
    """A named instruction file every run of its scope gets: its text, or a path read from a repo at run time."""

    __tablename__ = "skills"
    __table_args__ = (UniqueConstraint("workspace_id", "scope_key", "name", name="uq_skills_scope_name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[int | None] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), default=None,
                                                index=True)
    scope_key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str | None] = mapped_column(Text, default=None)
    source_repo_id: Mapped[int | None] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), default=None)
    source_path: Mapped[str | None] = mapped_column(Text, default=None)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)


class TaskMessage(WorkspaceScoped, Base):
    """A person's message to a repo task's agent: delivered mid-run where the CLI takes input, else at its next start.

    ``status``: ``queued`` (waits for the next start), ``sent`` (written to a running agent's input),
    ``delivered`` (the agent took it, or it went into a prompt).
    """

    __tablename__ = "task_messages"
    __table_args__ = (Index("ix_task_messages_task", "task_id", "status"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("repo_tasks.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(Text)
    interrupt: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    delivered_attempt: Mapped[int | None] = mapped_column(Integer, default=None)
    delivered_via: Mapped[str | None] = mapped_column(String(16), default=None)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)


# --- persistent agents ------------------------------------------------------------------------------------


class PersistentAgent(RunColumns, Base):
    """A named, long-lived agent with an inbox (run kind `agent`): each wake runs one turn, then it idles.

    The reconcile columns are the agent's own, so the same queue, CAS executor and resync drive it as any run.
    `attempts` counts the turns started; it is the attempt number of the current turn's process and logs.
    """

    __tablename__ = "persistent_agents"
    __table_args__ = (UniqueConstraint("workspace_id", "slug", name="uq_persistent_agents_slug"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200), default="")
    system_prompt: Mapped[str] = mapped_column(Text, default="")
    operator_manual: Mapped[str] = mapped_column(Text, default="")
    agent_type: Mapped[str] = mapped_column(String(64))
    agent_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # on-demand (cold every turn), sticky (warm for idle_timeout_s after a turn), always-on.
    lifecycle: Mapped[str] = mapped_column(String(16), default="on-demand")
    idle_timeout_s: Mapped[float] = mapped_column(Float, default=600.0)
    max_consecutive_failures: Mapped[int] = mapped_column(Integer, default=3)
    max_turn_s: Mapped[float | None] = mapped_column(Float, default=None)
    # Spending cap per UTC day; reaching it pauses the agent with reason `budget_exceeded`.
    max_cost_usd: Mapped[float | None] = mapped_column(Float, default=None)
    secret_names: Mapped[list[Any]] = mapped_column(default=list)
    paused_reason: Mapped[str | None] = mapped_column(String(64), default=None)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    turn_count: Mapped[int] = mapped_column(Integer, default=0)
    current_turn_id: Mapped[int | None] = mapped_column(Integer, default=None)
    # How the turn that is ending went (succeeded, failed, interrupted, budget_exceeded): written by the
    # decision's CAS write, read in the same transaction to close the turn row.
    last_turn_outcome: Mapped[str | None] = mapped_column(String(32), default=None)
    last_turn_at: Mapped[datetime | None] = mapped_column(default=None)
    agent_session_id: Mapped[str | None] = mapped_column(String(200), default=None)
    created_by: Mapped[int | None] = mapped_column(Integer, default=None)


class AgentTurn(WorkspaceScoped, Base):
    """One turn of a persistent agent: the messages it drained, the prompt it got, what it cost and how it ended.

    Its output is the agent's run log of attempt `number` (kind `agent`, run id = the agent's id).
    """

    __tablename__ = "agent_turns"
    __table_args__ = (UniqueConstraint("agent_id", "number", name="uq_agent_turns_number"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("persistent_agents.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    wake_reason: Mapped[str] = mapped_column(Text, default="")
    message_ids: Mapped[list[Any]] = mapped_column(default=list)
    prompt: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16), default="running")
    outcome: Mapped[str | None] = mapped_column(String(32), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    cost_at_start: Mapped[float] = mapped_column(Float, default=0.0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    resumed_session_id: Mapped[str | None] = mapped_column(String(200), default=None)
    session_id: Mapped[str | None] = mapped_column(String(200), default=None)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class AgentMessage(WorkspaceScoped, Base):
    """A message in a persistent agent's inbox.

    `sender` is `user:<id>`, `agent:<workspace>/<slug>`, `system:<label>` or `external:<label>`. `turn_id` is
    the latest turn that drained it; `processed_by_turn` is set only when that turn succeeded, so a failed
    turn leaves it pending for the next one.
    """

    __tablename__ = "agent_messages"
    __table_args__ = (Index("ix_agent_messages_inbox", "agent_id", "processed_by_turn", "id"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("persistent_agents.id", ondelete="CASCADE"))
    sender: Mapped[str] = mapped_column(String(300))
    type: Mapped[str] = mapped_column(String(32), default="text")
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    turn_id: Mapped[int | None] = mapped_column(Integer, default=None)
    processed_by_turn: Mapped[int | None] = mapped_column(Integer, default=None)
    processed_at: Mapped[datetime | None] = mapped_column(default=None)


class Lease(Base):
    """Work with one owner at a time across replicas (a sweep, a replica's own liveness).

    The holder renews ``expires_at`` well before it passes; once it has passed, any replica may take it over.
    """

    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128))
    acquired_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class SweepRun(Base):
    """When a single-owner sweep ran and in which replica: the record that shows two never overlapped."""

    __tablename__ = "sweep_runs"
    __table_args__ = (Index("ix_sweep_runs_name_started", "name", "started_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class RateCounter(Base):
    """A rate limit's hits in a key's current window, shared by every replica; the window ends at `expires_at`."""

    __tablename__ = "rate_counters"
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    hits: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class PromptTemplate(WorkspaceScoped, Timestamps, Base):
    """A workspace's default, or a repo's override, of one kind of prompt (task, review, job). `scope` is
    `workspace` or `repo:<id>`, so one unique key covers both (a NULL repo id would not be unique)."""

    __tablename__ = "prompt_templates"
    __table_args__ = (UniqueConstraint("workspace_id", "kind", "scope", name="uq_prompt_templates_scope"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    scope: Mapped[str] = mapped_column(String(64))
    repo_id: Mapped[int | None] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), default=None, index=True)
    body: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)
