"""An Optio database with a repo on the fake GitLab, the `GitLabForge` for it, and Optio's own git to push with.

The token and the webhook secret are real named secrets handed out by a small secrets provider; the redactor
masks both, as the server's redactor registry would.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.support.fake_gitlab import FakeGitLab, Project

from optio.control.ports import RunRef
from optio.forge.git import branch_for_task
from optio.forge.gitlab import GitLabForge
from optio.forge.worktrees import RepoCaches
from optio.services.tasks import create_task
from optio.store import migrate, workspaces
from optio.store.db import Database
from optio.store.models import Repo

TOKEN_SECRET = "GITLAB_TOKEN"
HOOK_SECRET = "GITLAB_HOOK_TOKEN"
ALLOW = ["127.0.0.1"]


class Secrets:
    """Named secrets of one workspace, as `SecretsProvider.env_for` hands them out."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = dict(values)
        self.asked: list[list[str]] = []

    def env_for(self, workspace_id: int, names: list[str], repo_id: int | None = None, *,
                run: RunRef | None = None) -> dict[str, str]:
        self.asked.append(list(names))
        return {n: self.values[n] for n in names if n in self.values}

    def redact(self, text: str, _ws: int = 0, _repo: int | None = None) -> str:
        for value in self.values.values():
            text = text.replace(value, "[REDACTED]")
        return text


class GitLabOptio:
    def __init__(self, tmp: Path, fake: FakeGitLab, project: Project, *, repo_options: dict[str, Any] | None = None,
                 db: Database | None = None) -> None:
        self.tmp = tmp
        self.fake = fake
        self.project = project
        self.hook_token = "hook-" + fake.bot.token[-12:]
        self.secrets = Secrets({TOKEN_SECRET: fake.bot.token, HOOK_SECRET: self.hook_token})
        self.data_dir = tmp / "data"
        if db is None:
            db = Database(f"sqlite:///{tmp / 'optio.db'}")
            migrate.upgrade(db)
        self.db = db
        with self.db.write() as session:
            self.workspace_id = workspaces.ensure_default(session).id
        self.repo_id = self.add_repo(project, "gl", **(repo_options or {}))
        self.projects = {self.repo_id: project}
        self.forge = GitLabForge(self.db, self.data_dir, redact=self.secrets.redact, secrets=self.secrets,
                                 outbound_allowlist=ALLOW, public_url="http://optio.test")
        self.caches = RepoCaches(self.data_dir, credential=self.credential, outbound_allowlist=ALLOW)

    def add_repo(self, project: Project, name: str, **options: Any) -> int:
        """A repo row for ``project`` on the fake, as `optio repo add URL --forge gitlab` makes it."""
        with self.db.write() as session:
            repo = Repo(workspace_id=self.workspace_id, name=name, remote_url=self.fake.remote_url(project),
                        forge="gitlab", default_branch=project.default_branch, credential_secret=TOKEN_SECRET,
                        api_url=self.fake.base_url, webhook_secret=HOOK_SECRET, agent_type="script",
                        agent_config={}, **options)
            session.add(repo)
            session.flush()
            repo_id = repo.id
        if hasattr(self, "projects"):
            self.projects[repo_id] = project
        return repo_id

    def credential(self, repo_id: int) -> str | None:
        return self.secrets.values[TOKEN_SECRET]

    def task(self, title: str = "Change things", repo: str = "gl", **extra: Any) -> int:
        return create_task(self.db, self.workspace_id, {"repo": repo, "title": title, "prompt": "do it",
                                                        "agent_config": {"command": "true"}, **extra}).id

    def push(self, task_id: int, files: dict[str, str], message: str = "work", *, repo_id: int | None = None) -> str:
        """What Optio does for a task: a worktree from its cache, the agent's files committed, the branch pushed."""
        repo_id = self.repo_id if repo_id is None else repo_id
        project = self.projects[repo_id]
        cache = self.caches.for_repo(_RepoAt(repo_id, self.fake.remote_url(project)))
        cache.ensure()
        cache.fetch()
        path = self.data_dir / "worktrees" / f"task-{task_id}"
        if not path.exists():
            cache.add_worktree(path, branch_for_task(task_id), project.default_branch)
        for name, content in files.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_text(content)
        cache.commit_all(path, message)
        return cache.push_branch(path, branch_for_task(task_id))

    def open(self, task_id: int, files: dict[str, str], title: str = "Change things", *,
             repo_id: int | None = None) -> tuple[int, str]:
        repo_id = self.repo_id if repo_id is None else repo_id
        head = self.push(task_id, files, repo_id=repo_id)
        info = self.forge.open_or_update_pr(repo_id, task_id, head_branch=branch_for_task(task_id),
                                            head_sha=head, title=title, body=f"do it\n\n---\nOpened by Optio for "
                                                                             f"task #{task_id}.")
        return info.number, head


class _RepoAt:
    def __init__(self, repo_id: int, remote_url: str) -> None:
        self.id = repo_id
        self.remote_url = remote_url


def token_free(text: str, token: str) -> bool:
    """No trace of the token: neither whole nor the distinctive part after GitLab's ``glpat-`` prefix."""
    return token not in text and re.sub(r"^glpat-", "", token)[:16] not in text
