"""One typed settings object, read from OPTIO_* environment variables."""

from __future__ import annotations

import ipaddress
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPTIO_", env_file=None, extra="ignore")

    data_dir: Path = Field(default=Path("./.optio"), description="Where the database, worktrees and logs live")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default: SQLite in data_dir")
    db_busy_timeout_s: float = Field(
        default=30.0, gt=0, description="SQLite: how long a write waits for another writer's lock before the work "
        "is deferred (the API answers 503 database_busy)"
    )
    host: str = "127.0.0.1"
    port: int = 8470
    url: str | None = Field(default=None, description="API base URL the CLI talks to")

    max_concurrent_runs: int = Field(default=8, ge=1, description="Global cap on running agent processes")
    max_concurrent_per_repo: int = Field(default=4, ge=1)
    workers: int = Field(default=4, ge=1, description="Reconcile worker threads")
    stall_threshold_s: float = Field(default=900.0, gt=0, description="No output for this long = stalled")
    resync_interval_s: float = Field(default=300.0, gt=0)
    watch_interval_s: float = Field(default=30.0, gt=0, description="PR watcher poll interval")
    trigger_tick_s: float = Field(default=5.0, gt=0, description="How often schedules are checked for due times")
    notify_backoff_s: float = Field(default=5.0, gt=0, description="First notification retry delay; doubles")
    notify_max_attempts: int = Field(default=10, ge=1, le=100, description="Attempts before a notification is failed")
    notify_timeout_s: float = Field(default=10.0, gt=0, description="Per-attempt timeout of a notification")
    ticket_poll_interval_s: float = Field(default=60.0, gt=0,
                                          description="How often ticket sources are polled (behind their webhooks)")
    max_auto_resumes: int = Field(default=10, ge=0)
    agent_timeout_s: float = Field(default=3600.0, gt=0, description="Default wall-clock limit per agent run")
    ci_timeout_s: float = Field(default=1800.0, gt=0,
                                description="Wall-clock limit per CI run; a CI killed by it needs a person")
    merge_batch_max: int = Field(default=8, ge=1,
                                 description="Most queued PRs one merge-queue CI run tests together; 1 = one at a time")
    queue_lease_s: float = Field(default=60.0, gt=0)
    role: Literal["all", "api", "worker"] = Field(
        default="all", description="api = HTTP only; worker = reconcilers and sweeps (HTTP: /api/health only); "
        "all = both"
    )
    replica_lease_s: float = Field(
        default=15.0, gt=0, description="Lease period of a replica and of its single-owner sweeps: a dead "
        "replica's work moves to another within it"
    )
    max_executor_errors: int = Field(
        default=5, ge=1, description="The same failure applying a run's decision this many times in a row gives it up"
    )
    executor_error_backoff_s: float = Field(default=2.0, gt=0, description="First wait after such a failure; doubles")
    executor_error_backoff_cap_s: float = Field(default=300.0, gt=0)
    max_run_log_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1024,
        description="Output stored per run; past it, a marker line and the rest dropped"
    )
    log_stream_buffer_bytes: int = Field(
        default=4 * 1024 * 1024, ge=64 * 1024,
        description="Live log stream: what may wait for one slow client before it is dropped (it reconnects "
                    "with ?after=SEQ); also the recent events a followed log keeps for clients joining behind it"
    )
    log_stream_poll_s: float = Field(
        default=2.0, gt=0,
        description="Live log stream: how often a log is read without a wake-up (new lines wake it at once)"
    )
    log_level: str = "info"

    # --- the sandbox around agents, CI and review commands (bubblewrap) -----------------------------------
    sandbox: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="auto = on when bubblewrap works (else refuse to start with auth on); on = required; "
        "off = explicit, single-user machine only",
    )
    sandbox_memory_mb: int = Field(default=16384, ge=0, description="Address-space limit per run process; 0 = none")
    sandbox_max_processes: int = Field(default=4096, ge=0, description="Process limit per run (not for root); 0 = none")
    sandbox_max_file_mb: int = Field(default=8192, ge=0, description="Largest file a run may write; 0 = none")
    sandbox_readonly_paths: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="Extra host dirs shown read-only in the sandbox (comma-separated)"
    )

    # --- where agents run: local processes, or pods of a Kubernetes cluster -----------------------------
    runtime: Literal["local", "kubernetes"] = Field(default="local", description="Where agent processes run")
    kube_namespace: str = Field(default="optio", description="Namespace of the agent pods, Secrets and policy")
    kube_kubeconfig: Path | None = Field(default=None, description="Kubeconfig file; default: in-cluster account")
    kube_api_url: str | None = Field(default=None, description="API server URL (with kube_token instead of a file)")
    kube_token: str | None = Field(default=None, description="Bearer token for kube_api_url")
    kube_ca_file: Path | None = Field(default=None, description="CA bundle of kube_api_url")
    kube_images: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, description="Agent image per agent type (`type=image,type=image`)"
    )
    kube_default_image: str = Field(default="optio-agent:latest", description="Image of agent types not listed")
    kube_git_url: str | None = Field(
        default=None, description="Optio's URL as agent pods reach it, for their git exchange; default: OPTIO_URL"
    )
    kube_git_max_push_mb: int = Field(default=512, ge=1, description="Largest worktree a pod may hand back")
    kube_git_image: str | None = Field(default=None, description="Image of the checkout init container")
    kube_cpu_request: str = "250m"
    kube_cpu_limit: str = "2"
    kube_memory_request: str = "512Mi"
    kube_memory_limit: str = "4Gi"
    kube_run_as_user: int = Field(default=1000, ge=1, description="Non-root uid of the agent containers")
    kube_egress_cidrs: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="CIDRs agent pods may reach besides DNS (comma-separated); none = DNS only"
    )
    kube_egress_ports: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [443], description="TCP ports allowed to kube_egress_cidrs (comma-separated)"
    )
    kube_local_kinds: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["pr_review"],
        description="Run kinds that stay local processes with the Kubernetes runtime (comma-separated)",
    )
    kube_kill_grace_s: int = Field(default=10, ge=1, description="Grace period of a cancelled agent pod")

    # --- auth, secrets and request limits -------------------------------------------------------------
    auth: Literal["enabled", "disabled"] = Field(
        default="enabled", description="'disabled' only for a single-user laptop: binds 127.0.0.1 and warns"
    )
    admin_api_key: str | None = Field(default=None, description="Preset the bootstrap admin's key (optio_...)")
    metrics_token: str | None = Field(
        default=None, description="Bearer token Prometheus sends to /metrics; unset = an admin's API key"
    )
    encryption_key: str | None = Field(default=None, description="Secret encryption key; else a 0600 key file")
    session_secret: str | None = Field(default=None, description="Signs CSRF tokens; else a 0600 file")
    session_ttl_s: float = Field(default=7 * 24 * 3600.0, gt=0)
    cookie_secure: Literal["auto", "always", "never"] = Field(
        default="auto", description="Secure flag on session cookies; auto = when the request came over https"
    )
    outbound_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Hosts/CIDRs the SSRF guard allows (comma-separated)"
    )
    local_remote_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Directories under which local paths and file:// remotes may be registered (comma-separated); "
        "empty: none, except with OPTIO_AUTH=disabled, where any path outside the data dir is allowed",
    )
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    oidc_redirect_url: str | None = Field(default=None, description="Default: <request base>/auth/oidc/callback")
    oidc_default_role: Literal["admin", "member", "viewer"] = Field(
        default="viewer", description="Role in OPTIO_OIDC_DEFAULT_WORKSPACE given at a person's first OIDC sign-in"
    )
    oidc_default_workspace: str | None = Field(
        default=None, description="Workspace slug new OIDC users join; unset = they join none until an admin adds them"
    )
    oidc_allowed_domains: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Email domains allowed to sign in with OIDC (comma-separated); empty = any"
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Addresses/CIDRs whose X-Forwarded-For/-Proto are believed (comma-separated); empty = none",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host headers the server answers (comma-separated, `host` or `host:port`, `*` = any); "
                    "default: the bind address, localhost, 127.0.0.1 and [::1] on the server's port",
    )
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, description="Request body size limit")
    login_rate_limit: int = Field(default=10, ge=1, description="Login attempts per client per window")
    webhook_rate_limit: int = Field(default=60, ge=1, description="Webhook deliveries per client per window")
    rate_limit_window_s: float = Field(default=60.0, gt=0)

    @field_validator("sandbox_readonly_paths", mode="before")
    @classmethod
    def _split_paths(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("kube_egress_cidrs", "kube_egress_ports", "kube_local_kinds", mode="before")
    @classmethod
    def _split_kube_lists(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("kube_images", mode="before")
    @classmethod
    def _split_images(cls, value: Any) -> Any:
        if isinstance(value, str):
            pairs = [part.strip() for part in value.split(",") if part.strip()]
            bad = [pair for pair in pairs if "=" not in pair]
            if bad:
                raise ValueError(f"kube_images: expected type=image, got {bad[0]!r}")
            return dict(pair.split("=", 1) for pair in pairs)
        return value

    @field_validator("outbound_allowlist", "trusted_proxies", "allowed_hosts", mode="before")
    @classmethod
    def _split_allowlist(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("local_remote_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def allowed_local_remote_roots(self) -> list[Path] | None:
        """Resolved roots for local remotes; None means anywhere (the embedded single-user setup)."""
        if self.local_remote_roots:
            return [root.expanduser().resolve() for root in self.local_remote_roots]
        return None if not self.auth_enabled else []
    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for part in value:
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ValueError(f"{part!r} is not an IP address or CIDR") from None
        return value

    @field_validator("oidc_allowed_domains", mode="before")
    @classmethod
    def _split_domains(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list):
            return [str(part).strip().lstrip("@").lower() for part in value if str(part).strip()]
        return value

    @property
    def auth_enabled(self) -> bool:
        return self.auth != "disabled"

    @cached_property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_data_dir / 'optio.db'}"

    @property
    def api_url(self) -> str:
        return self.url or f"http://{self.host}:{self.port}"
