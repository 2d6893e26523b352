"""What every hosted forge (GitHub, GitLab, ...) shares: telling a forge from its URL, a repo's settings as the
adapter needs them, credentials read by secret name, and backing off while the forge says "not now".

A new hosted forge plugs in with a few lines: a `HostedKind` in `KINDS` (its hosts and how its API root
follows from a remote URL) and its adapter in the server's `ForgeRegistry` under the same name.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from optio.control.ports import SecretsProvider
from optio.errors import NotFound
from optio.forge.base import ForgeBusy
from optio.store import forge_hooks
from optio.store.db import Database
from optio.store.models import Repo

LOCAL = "local"
# A task's branch names its task: how a webhook about a branch finds the task it belongs to.
TASK_BRANCH = re.compile(r"^optio/(\d+)$")
# git's scp-like remote syntax, ``user@host:path``.
SCP_LIKE = re.compile(r"^[\w.+-]+@([\w.-]+):(?!//)")


@dataclass(frozen=True)
class HostedKind:
    """One hosted forge kind: the public hosts that mean it, and its API root for a remote on a host."""

    name: str
    hosts: tuple[str, ...]
    api_root: Callable[[str, str], str]  # (scheme, host) -> API root URL
    token_username: str = "optio"  # the user name git presents with a token (the token is the password)


def _github_api(scheme: str, host: str) -> str:
    return "https://api.github.com" if host == "github.com" else f"{scheme}://{host}/api/v3"


def _gitlab_api(scheme: str, host: str) -> str:
    return f"{scheme}://{host}/api/v4"


KINDS: dict[str, HostedKind] = {
    "github": HostedKind("github", ("github.com",), _github_api, token_username="x-access-token"),
    "gitlab": HostedKind("gitlab", ("gitlab.com",), _gitlab_api, token_username="oauth2"),
}


def is_network_url(remote: str) -> bool:
    return urlsplit(remote).scheme in ("http", "https")


def detect_forge(remote: str, explicit: str | None = None) -> str:
    """The forge kind of a remote: ``explicit`` when given, a known host's kind, else the local forge.

    A local path or file:// URL is always the local forge; a URL on a host no kind claims (a self-managed
    GitLab, GitHub Enterprise) stays on the local forge unless ``--forge`` says otherwise.
    """
    parsed = urlsplit(remote)
    if explicit:
        return explicit
    scp = SCP_LIKE.match(remote)
    if scp is not None:
        host = scp.group(1).lower().rstrip(".")
    elif parsed.scheme not in ("http", "https", "ssh", "git"):
        return LOCAL
    else:
        host = (parsed.hostname or "").lower().rstrip(".")
    for kind in KINDS.values():
        if host in kind.hosts:
            return kind.name
    return LOCAL


def default_api_url(kind: str, remote: str) -> str | None:
    """The API root a hosted forge's remote implies (github.com → api.github.com, Enterprise → /api/v3)."""
    known = KINDS.get(kind)
    parsed = urlsplit(remote)
    if known is None or parsed.scheme not in ("http", "https"):
        return None
    host = parsed.hostname or ""
    if parsed.port:
        host = f"{host}:{parsed.port}"
    return known.api_root(parsed.scheme, host)


def project_path(remote: str) -> str:
    """``owner/name`` (GitLab: ``group/sub/name``) of a hosted remote URL."""
    path = urlsplit(remote).path.strip("/")
    path = path.removesuffix(".git").strip("/")
    if path.count("/") < 1:
        raise ValueError(f"{remote!r} does not name an owner and a repository (https://host/OWNER/REPO)")
    return path


@dataclass(frozen=True)
class HostedRepo:
    """A repo on a hosted forge as its adapter needs it, read from the repos table."""

    id: int
    workspace_id: int
    remote_url: str
    api_url: str
    path: str
    default_branch: str
    token_secret: str | None
    webhook_secret: str | None
    options: Mapping[str, Any] = field(default_factory=dict)
    ci_command: str | None = None
    require_approval: bool = False

    @classmethod
    def of(cls, repo: Repo) -> HostedRepo:
        api = repo.api_url or default_api_url(repo.forge, repo.remote_url) or ""
        return cls(id=repo.id, workspace_id=repo.workspace_id, remote_url=repo.remote_url, api_url=api,
                   path=project_path(repo.remote_url), default_branch=repo.default_branch,
                   token_secret=repo.credential_secret, webhook_secret=repo.webhook_secret,
                   options=dict(repo.forge_options or {}), ci_command=repo.ci_command,
                   require_approval=repo.require_approval)


class AccessChecker(Protocol):
    """What `optio repo add` asks a hosted forge once: can Optio read the repo and push to it?"""

    def check_access(self, *, api_url: str, remote_url: str, token: str | None, options: Mapping[str, Any],
                     secret: Callable[[str], str | None]) -> list[str]:
        """What is missing, each item one sentence a person can act on; empty when all is there."""
        ...


class HostedBase:
    """Plumbing every hosted adapter shares: repo settings, named secrets, and a per-repo busy gate."""

    def __init__(self, db: Database, *, secrets: SecretsProvider | None = None,
                 redact: Callable[[str, int, int | None], str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.secrets = secrets
        self.redact: Callable[[str, int, int | None], str] = redact or (lambda text, _ws, _repo: text)
        self.clock = clock
        self._busy: dict[int, tuple[float, str]] = {}
        self._busy_lock = threading.Lock()

    def hosted_repo(self, repo_id: int) -> HostedRepo:
        with self.db.read() as session:
            repo = forge_hooks.repo_for_hook(session, repo_id)
            if repo is None:
                raise NotFound(f"repo {repo_id} not found")
            return HostedRepo.of(repo)

    def secret(self, repo: HostedRepo, name: str | None) -> str | None:
        """A named secret's value for this repo, read at each use so a changed secret applies at once."""
        if not name or self.secrets is None:
            return None
        value = self.secrets.env_for(repo.workspace_id, [name], repo_id=repo.id).get(name)
        return None if value is None else str(value)

    # --- deferral ---------------------------------------------------------------------------------------

    def check_busy(self, repo_id: int) -> None:
        """Raise ForgeBusy without a request while the forge told us to wait (no call spends rate limit)."""
        with self._busy_lock:
            until = self._busy.get(repo_id)
        if until is not None:
            left = until[0] - self.clock()
            if left > 0:
                raise ForgeBusy(until[1], left)
            with self._busy_lock:
                self._busy.pop(repo_id, None)

    def mark_busy(self, repo_id: int, busy: ForgeBusy) -> ForgeBusy:
        with self._busy_lock:
            self._busy[repo_id] = (self.clock() + busy.retry_after_s, busy.reason)
        return busy


def retry_after_s(headers: Mapping[str, str], *, now: float, default: float) -> float:
    """How long a forge asked us to wait: ``Retry-After`` (seconds or a date), else a rate-limit reset time.

    ``X-RateLimit-Reset`` (GitHub, epoch seconds) and ``RateLimit-Reset`` (GitLab, epoch seconds) count only
    when the remaining budget is 0. At least one second; ``default`` when the forge does not say.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    after = lowered.get("retry-after")
    if after:
        try:
            return max(1.0, float(after))
        except ValueError:
            try:
                return max(1.0, parsedate_to_datetime(after).timestamp() - now)
            except (TypeError, ValueError):
                pass
    for prefix in ("x-ratelimit-", "ratelimit-"):
        if lowered.get(prefix + "remaining") == "0" and lowered.get(prefix + "reset"):
            try:
                return max(1.0, float(lowered[prefix + "reset"]) - now + 1.0)
            except ValueError:
                pass
    return default


def task_of_branch(branch: str | None) -> int | None:
    """The task a branch belongs to (``optio/<task-id>``), None for any other branch."""
    match = TASK_BRANCH.match(branch or "")
    return int(match.group(1)) if match else None


def issue_number(ticket_ref: str | None) -> int | None:
    """The issue of the forge's own repo a task came from (a ticket ref ending ``#N``), None for any other."""
    match = re.search(r"#(\d+)$", ticket_ref or "")
    if not match or (ticket_ref or "").startswith("local#"):
        return None
    return int(match.group(1))
