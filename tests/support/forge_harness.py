"""One repo-loop scenario, any forge: what a test needs of a forge to drive Optio's loop on it and check the end.

`LocalHarness` puts repos on Optio's local forge (a bare remote on disk, CI = `--ci-command`, approval through
`optio pr approve`); `GitHubHarness` on `FakeGitHub` (CI = the fake Actions runner, approval = a person's GitHub
review, webhooks signed); `GitLabHarness` on `FakeGitLab` (CI = its pipeline runner, approval = a person's
MR approval, webhooks with `X-Gitlab-Token`). A new forge adds its harness class and its name to `HARNESSES`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from tests.support.fake_github import FakeGitHub
from tests.support.fake_github import Repo as GitHubRepo
from tests.support.fake_gitlab import FakeGitLab, Project
from tests.support.git_remote import git, make_remote
from tests.support.optio_server import OptioServer

GITHUB_TOKEN = "ghp_optio_token_7f3a9c"
GITHUB_PERSON = "ghp_person_token_55e1"
GITHUB_HOOK_SECRET = "hook-secret-5b2d"
SERVER_ENV = {"OPTIO_OUTBOUND_ALLOWLIST": "127.0.0.1"}


class ForgeHarness(Protocol):
    kind: str
    server: OptioServer

    def add_repo(self, name: str, *, ci: str | None = None, require_approval: bool = False,
                 files: dict[str, str] | None = None) -> None: ...

    def main_log(self, name: str) -> list[str]: ...

    def show(self, name: str, path: str) -> str: ...

    def approve(self, name: str, task_id: int) -> None: ...

    def close(self) -> None: ...


class LocalHarness:
    kind = "local"

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp = tmp
        self.server = OptioServer(tmp / "data", env={**SERVER_ENV, **env}).start()
        self.remotes: dict[str, Path] = {}

    def add_repo(self, name: str, *, ci: str | None = None, require_approval: bool = False,
                 files: dict[str, str] | None = None) -> None:
        remote = make_remote(self.tmp, f"{name}.git", files=files)
        self.remotes[name] = remote
        args = ["repo", "add", str(remote), "--name", name]
        args += ["--ci-command", ci] if ci else []
        args += ["--require-approval"] if require_approval else []
        self.server.cli(*args, check=True)

    def main_log(self, name: str) -> list[str]:
        return git("log", "--format=%s", "main", cwd=self.remotes[name]).splitlines()

    def show(self, name: str, path: str) -> str:
        return git("show", f"main:{path}", cwd=self.remotes[name])

    def approve(self, name: str, task_id: int) -> None:
        self.server.cli("pr", "approve", "--task", str(task_id), check=True)

    def close(self) -> None:
        self.server.stop()


class GitHubHarness:
    kind = "github"

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.github = FakeGitHub(tmp / "github").__enter__()
        self.server = OptioServer(tmp / "data", env={**SERVER_ENV, **env}).start()
        self.server.cli("secret", "set", "GITHUB_TOKEN", "--value", GITHUB_TOKEN, check=True)
        self.server.cli("secret", "set", "GITHUB_HOOK", "--value", GITHUB_HOOK_SECRET, check=True)
        self.repos: dict[str, GitHubRepo] = {}

    def add_repo(self, name: str, *, ci: str | None = None, require_approval: bool = False,
                 files: dict[str, str] | None = None) -> None:
        repo = self.github.create_repo("acme", name, ci_command=ci, files=files)
        self.repos[name] = repo
        args = ["repo", "add", self.github.remote_url(repo), "--forge", "github", "--api-url", self.github.api_url,
                "--token-secret", "GITHUB_TOKEN", "--webhook-secret", "GITHUB_HOOK", "--json"]
        args += [] if ci else ["--no-forge-ci"]
        args += ["--require-approval"] if require_approval else []
        repo_id = json.loads(self.server.cli(*args, check=True).stdout)["id"]
        self.github.hook(repo, f"{self.server.url}/api/forge-hooks/{repo_id}", GITHUB_HOOK_SECRET)

    def main_log(self, name: str) -> list[str]:
        return self.github.log(self.repos[name])

    def show(self, name: str, path: str) -> str:
        return self.github.show(self.repos[name], path)

    def approve(self, name: str, task_id: int) -> None:
        repo = self.repos[name]
        pull = self.github.pull_of_branch(repo, f"optio/{task_id}")
        assert pull is not None, f"task {task_id} has no pull request on GitHub"
        self.github.review_as(GITHUB_PERSON, repo, pull.number, event="APPROVE", body="LGTM")

    def close(self) -> None:
        self.server.stop()
        self.github.__exit__()


class GitLabHarness:
    kind = "gitlab"

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.gitlab = FakeGitLab(tmp / "gitlab").__enter__()
        self.server = OptioServer(tmp / "data", env={**SERVER_ENV, **env}).start()
        self.server.cli("secret", "set", "GITLAB_TOKEN", "--value", self.gitlab.bot.token, check=True)
        self.server.cli("secret", "set", "GITLAB_HOOK", "--value", GITHUB_HOOK_SECRET, check=True)
        self.projects: dict[str, Project] = {}

    def add_repo(self, name: str, *, ci: str | None = None, require_approval: bool = False,
                 files: dict[str, str] | None = None) -> None:
        project = self.gitlab.create_project(f"acme/{name}", files=files, ci_script=ci)
        self.projects[name] = project
        args = ["repo", "add", self.gitlab.remote_url(project), "--forge", "gitlab", "--api-url",
                f"{self.gitlab.base_url}/api/v4", "--token-secret", "GITLAB_TOKEN",
                "--webhook-secret", "GITLAB_HOOK", "--json"]
        args += [] if ci else ["--no-forge-ci"]
        args += ["--require-approval"] if require_approval else []
        repo_id = json.loads(self.server.cli(*args, check=True).stdout)["id"]
        self.gitlab.add_hook(project, f"{self.server.url}/api/forge-hooks/{repo_id}", GITHUB_HOOK_SECRET)

    def main_log(self, name: str) -> list[str]:
        return git("log", "--format=%s", "main", cwd=self.projects[name].repo).splitlines()

    def show(self, name: str, path: str) -> str:
        return git("show", f"main:{path}", cwd=self.projects[name].repo)

    def approve(self, name: str, task_id: int) -> None:
        project = self.projects[name]
        mr = self.gitlab.mr_of_branch(project, f"optio/{task_id}")
        assert mr is not None, f"task {task_id} has no merge request on GitLab"
        self.gitlab.approve_as_person(project, mr)

    def close(self) -> None:
        self.server.stop()
        self.gitlab.__exit__(None, None, None)


HARNESSES: dict[str, Callable[[Path, dict[str, str]], ForgeHarness]] = {
    "local": LocalHarness,
    "github": GitHubHarness,
    "gitlab": GitLabHarness,
}


def pr_number_in_log(line: str) -> str:
    """``Title (#N)`` → ``N``: PR numbers differ per forge (GitHub shares them with issues)."""
    return line.rsplit("(#", 1)[1].rstrip(")") if "(#" in line else ""

