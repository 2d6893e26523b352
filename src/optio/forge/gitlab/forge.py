"""GitLab (gitlab.com or self-managed) as an Optio forge: merge requests, pipelines, discussions, approvals.

Optio keeps no MR rows for a GitLab repo: the MR of task N is the one whose source branch is ``optio/N``,
read from GitLab each time control asks (conditional GETs, so an unchanged MR costs a 304). CI is the MR's
head pipeline on the head SHA; a red one is reported with each failed job's name and the redacted tail of
its trace. Requested changes are unresolved discussions (diff notes become ``path:line: text``) or a
reviewer in ``requested_changes``; approvals count once GitLab's own rule is met (``approvals_left`` 0).
Merges squash through the API (as the project allows), and GitLab keeps its own gates: a refusal a person
must fix (protected branch, missing approval) is :class:`MergeRefused` naming it, a wait (pipeline still
running, mergeability being computed) re-queues the task. Rate limits and 5xx are :class:`ForgeBusy`.

The token is the repo's ``credential_secret``, read at each call (a rotated secret applies at once); it
goes in the ``PRIVATE-TOKEN`` header only and every message is redacted with it.
"""

from __future__ import annotations

import hmac
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import structlog

from optio.control.ports import SecretsProvider
from optio.errors import Conflict, NotFound
from optio.forge.base import (
    DIFF_FILES_MAX,
    BadSignature,
    CiInfo,
    DiffFile,
    DiffSummary,
    ForgeBusy,
    ForgeEvent,
    LineComment,
    MergeRefused,
    PullRequestInfo,
    PullRequestState,
    ReviewInfo,
)
from optio.forge.git import branch_for_task
from optio.forge.gitlab import mapping
from optio.forge.gitlab.api import GitLabApi, GitLabError, encode_path
from optio.security.ssrf import UnsafeURLError, check_url
from optio.store import hosted_forge, queue
from optio.store.db import Database

log = structlog.get_logger("optio.forge.gitlab")

TRACE_TAIL_CHARS = 6000
MAX_FAILED_JOBS = 5
DIFFS_PER_PAGE = 100
# A merge GitLab cannot do yet (pipeline running, mergeability being computed): look again after this.
MERGE_WAIT_S = 5.0
MAX_MERGE_WAITS = 12
# detailed_merge_status values that pass by themselves.
_MERGE_WAITS = {"checking", "unchecked", "ci_still_running", "preparing", "approvals_syncing", "mergeable"}
_MERGE_REFUSAL_WHY = {
    "not_approved": "the merge request still needs approval",
    "discussions_not_resolved": "the merge request has unresolved discussions",
    "blocked_status": "the merge request is blocked by another merge request",
    "policies_denied": "a merge request approval policy denies it",
    "external_status_checks": "external status checks have not passed",
    "jira_association_missing": "the title or description must name a Jira issue",
    "draft_status": "the merge request is a draft",
    "not_open": "the merge request is not open",
    "ci_must_pass": "the pipeline must succeed",
    "requested_changes": "a reviewer requested changes",
}


@dataclass(frozen=True)
class RepoFacts:
    id: int
    workspace_id: int
    remote_url: str
    api_url: str | None
    credential_secret: str | None
    webhook_secret: str | None
    default_branch: str
    forge_options: dict[str, Any]

    @property
    def project_path(self) -> str:
        return mapping.project_path(self.remote_url)


class GitLabForge:
    name = "gitlab"

    def __init__(self, db: Database, data_dir: Path, *,
                 redact: Callable[[str, int, int | None], str] | None = None,
                 secrets: SecretsProvider | None = None, outbound_allowlist: Sequence[str] = (),
                 public_url: str | None = None) -> None:
        self.db = db
        self.data_dir = data_dir
        self.redact: Callable[[str, int, int | None], str] = redact or (lambda text, _ws, _repo: text)
        self.secrets = secrets
        self.outbound_allowlist = list(outbound_allowlist)
        self.public_url = public_url.rstrip("/") if public_url else None
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], GitLabApi] = {}
        self._projects: dict[int, int] = {}  # repo id -> GitLab project id
        self._iids: dict[tuple[int, int], int] = {}  # (repo id, task id) -> MR iid
        self._failures: OrderedDict[tuple[int, int], str] = OrderedDict()  # (repo, pipeline id) -> output
        self._seen: dict[tuple[int, int], tuple[Any, ...]] = {}  # (repo, task) -> what the poller last saw
        self._merge_waits: dict[tuple[int, int, str], int] = {}  # (project, MR, head) -> refusals waited out
        self._pushed: dict[tuple[int, int], tuple[str, str]] = {}  # (repo, task) -> (pushed head, head before)

    # --- plumbing -------------------------------------------------------------------------------------

    def _facts(self, repo_id: int) -> RepoFacts:
        with self.db.read() as session:
            repo = hosted_forge.repos_by_id(session, repo_id)
            if repo is None:
                raise NotFound(f"repo {repo_id} not found")
            return RepoFacts(id=repo.id, workspace_id=repo.workspace_id, remote_url=repo.remote_url,
                             api_url=repo.api_url, credential_secret=repo.credential_secret,
                             webhook_secret=repo.webhook_secret, default_branch=repo.default_branch,
                             forge_options=dict(repo.forge_options or {}))

    def _secret(self, repo: RepoFacts, name: str) -> str | None:
        if self.secrets is None:
            return None
        value = self.secrets.env_for(repo.workspace_id, [name], repo_id=repo.id).get(name)
        return None if value is None else str(value)

    def api(self, repo: RepoFacts) -> GitLabApi:
        """The client for the repo's instance with its token as it is now."""
        if not repo.credential_secret:
            raise GitLabError(f"repo {repo.id} has no token secret (set the repo's credential secret)")
        token = self._secret(repo, repo.credential_secret)
        if not token:
            raise GitLabError(f"the repo's token secret {repo.credential_secret!r} does not exist")
        base = mapping.api_base(repo.remote_url, repo.api_url)
        try:
            check_url(base, allowlist=self.outbound_allowlist)
        except UnsafeURLError as exc:
            raise GitLabError(f"GitLab API URL {base} refused: {exc}") from None
        with self._lock:
            client = self._clients.get((base, token))
            if client is None:
                ws, repo_id = repo.workspace_id, repo.id
                client = GitLabApi(base, token, redact=lambda text: self.redact(text, ws, repo_id))
                self._clients = {k: v for k, v in self._clients.items() if k[0] != base}  # a rotated token
                self._clients[(base, token)] = client
            return client

    def _project_id(self, api: GitLabApi, repo: RepoFacts) -> int:
        with self._lock:
            known = self._projects.get(repo.id)
        if known is not None:
            return known
        project = api.get(f"/projects/{encode_path(repo.project_path)}")
        with self._lock:
            self._projects[repo.id] = int(project["id"])
        return int(project["id"])

    def _open(self, repo_id: int) -> tuple[RepoFacts, GitLabApi, str]:
        """The repo, its client, and the API path prefix of its project."""
        repo = self._facts(repo_id)
        api = self.api(repo)
        return repo, api, f"/projects/{self._project_id(api, repo)}"

    def _mr(self, api: GitLabApi, prefix: str, number: int) -> dict[str, Any]:
        try:
            mr: dict[str, Any] = api.get(f"{prefix}/merge_requests/{number}")
        except GitLabError as exc:
            if exc.response_code == 404:
                raise NotFound(f"merge request !{number} not found") from None
            raise
        return mr

    def _mr_of_task(self, repo: RepoFacts, api: GitLabApi, prefix: str, task_id: int) -> dict[str, Any] | None:
        """The task's MR: the open one from ``optio/<task>`` if any, else the latest (merged or closed)."""
        with self._lock:
            iid = self._iids.get((repo.id, task_id))
        if iid is not None:
            mr = self._mr(api, prefix, iid)
            if mr.get("state") == "opened" or mr.get("state") == "merged":
                return mr
        found: list[dict[str, Any]] = api.get(f"{prefix}/merge_requests", {
            "source_branch": branch_for_task(task_id), "state": "all", "order_by": "created_at", "sort": "desc"})
        if not found:
            return None
        chosen = next((m for m in found if m.get("state") == "opened"), found[0])
        with self._lock:
            self._iids[(repo.id, task_id)] = int(chosen["iid"])
        return self._mr(api, prefix, int(chosen["iid"]))

    def _base_tip(self, api: GitLabApi, prefix: str, branch: str) -> str | None:
        try:
            found = api.get(f"{prefix}/repository/branches/{encode_path(branch)}")
        except GitLabError:
            return None
        return str((found.get("commit") or {}).get("id") or "") or None

    def _enqueue(self, task_id: int, reason: str, *, delay_s: float = 0.0) -> None:
        with self.db.write() as session:
            ws = hosted_forge.task_workspace(session, task_id)
            if ws is not None:
                queue.enqueue(session, "repo_task", task_id, ws, delay_s=delay_s, reason=reason)

    # --- the Forge port -------------------------------------------------------------------------------

    def open_or_update_pr(self, repo_id: int, task_id: int, *, head_branch: str, head_sha: str, title: str,
                          body: str) -> PullRequestInfo:
        """Open the task's MR into the default branch (a draft when the repo asks), or update its text."""
        repo, api, prefix = self._open(repo_id)
        description = self._description(repo, task_id, body)
        draft = bool(repo.forge_options.get("draft"))
        existing: list[dict[str, Any]] = api.get(f"{prefix}/merge_requests", {
            "source_branch": head_branch, "state": "opened"})
        if existing:
            mr = existing[0]
            if mr.get("sha") != head_sha:
                with self._lock:  # GitLab may show the previous head for a moment after the push
                    self._pushed[(repo.id, task_id)] = (head_sha, str(mr.get("sha")))
            want_title = mapping.draft_title(title) if mr.get("draft") else title
            if mr.get("title") != want_title or (mr.get("description") or "") != description:
                mr = api.put(f"{prefix}/merge_requests/{mr['iid']}", {"title": want_title,
                                                                       "description": description})
        else:
            mr = api.post(f"{prefix}/merge_requests", {
                "source_branch": head_branch, "target_branch": repo.default_branch,
                "title": mapping.draft_title(title) if draft else title, "description": description,
                "remove_source_branch": True, "squash": True})
        with self._lock:
            self._iids[(repo.id, task_id)] = int(mr["iid"])
        info = mapping.pr_info(mr, base_sha=self._base_tip(api, prefix, repo.default_branch))
        # GitLab may not have caught up with the push yet: the head is the one just pushed.
        return replace(info, head_sha=head_sha)

    def _description(self, repo: RepoFacts, task_id: int, body: str) -> str:
        with self.db.read() as session:
            ticket = hosted_forge.task_ticket_ref(session, task_id)
        lines = [body.rstrip()]
        if self.public_url:
            lines.append(f"Optio task: {self.public_url}/tasks/{task_id}")
        closes = mapping.closes_line(ticket, repo.project_path)
        if closes:
            lines.append(closes)
        return "\n\n".join(lines)

    def get_pr(self, repo_id: int, number: int) -> PullRequestInfo:
        _repo, api, prefix = self._open(repo_id)
        mr = self._mr(api, prefix, number)
        base = self._base_tip(api, prefix, str(mr["target_branch"])) if mr.get("state") == "opened" else None
        return mapping.pr_info(mr, base_sha=base)

    def pr_for_task(self, repo_id: int, task_id: int) -> PullRequestState | None:
        repo, api, prefix = self._open(repo_id)
        mr = self._mr_of_task(repo, api, prefix, task_id)
        if mr is None:
            return None
        required = repo.forge_options.get("ci_required", True) is not False
        if mr.get("state") != "opened":
            return PullRequestState(info=mapping.pr_info(mr), ci_required=required, ci=None, review=None)
        info = mapping.pr_info(mr, base_sha=self._base_tip(api, prefix, str(mr["target_branch"])))
        with self._lock:
            pushed, before = self._pushed.get((repo.id, task_id), (None, None))
        if pushed is not None and info.head_sha == before:
            # GitLab has not processed Optio's push yet (it updates MRs asynchronously): the head is the one
            # pushed, its CI and mergeability not known yet; never the previous head's red CI again.
            info = replace(info, head_sha=pushed, mergeable=None)
            ci = CiInfo(head_sha=pushed, status="pending", output="") if required else None
            return PullRequestState(info=info, ci_required=required, ci=ci, review=self._review(api, prefix, mr))
        if pushed is not None:
            with self._lock:
                self._pushed.pop((repo.id, task_id), None)
        ci = self._ci(repo, api, prefix, mr) if required else None
        return PullRequestState(info=info, ci_required=required, ci=ci, review=self._review(api, prefix, mr))

    def diff_summary(self, repo_id: int, number: int) -> DiffSummary:
        """The MR's files from ``GET .../merge_requests/:iid/diffs`` (its latest version), a page of 100 at a
        time, up to ``DIFF_FILES_MAX``."""
        _repo, api, prefix = self._open(repo_id)
        files: list[DiffFile] = []
        pages = DIFF_FILES_MAX // DIFFS_PER_PAGE
        batch: list[dict[str, Any]] = []
        for page in range(1, pages + 1):
            try:
                batch = api.get(f"{prefix}/merge_requests/{number}/diffs",
                                {"page": page, "per_page": DIFFS_PER_PAGE})
            except GitLabError as exc:
                if exc.response_code == 404:
                    raise NotFound(f"merge request !{number} not found") from None
                raise
            files += [mapping.diff_file(entry) for entry in batch]
            if len(batch) < DIFFS_PER_PAGE:
                break
        return DiffSummary(files=tuple(files), truncated=len(batch) == DIFFS_PER_PAGE and len(files) >= pages *
                           DIFFS_PER_PAGE)

    def ci_for_head(self, repo_id: int, number: int) -> CiInfo | None:
        repo, api, prefix = self._open(repo_id)
        return self._ci(repo, api, prefix, self._mr(api, prefix, number))

    def _ci(self, repo: RepoFacts, api: GitLabApi, prefix: str, mr: Mapping[str, Any]) -> CiInfo:
        """The head pipeline on the MR's head SHA (the latest pipeline of that SHA when GitLab has not
        linked one yet); pending until one exists."""
        head = str(mr.get("sha") or "")
        pipeline = mr.get("head_pipeline")
        if not pipeline or pipeline.get("sha") != head:
            found = api.get(f"{prefix}/pipelines", {"sha": head, "order_by": "id", "sort": "desc"})
            pipeline = found[0] if found else None
        if pipeline is None:
            return CiInfo(head_sha=head, status="pending", output="")
        status, _ = mapping.ci_status(str(pipeline.get("status")))
        output = self._failing_output(repo, api, prefix, pipeline) if status in ("failing", "error") else ""
        return mapping.ci_info(head, pipeline, output)

    def _failing_output(self, repo: RepoFacts, api: GitLabApi, prefix: str, pipeline: Mapping[str, Any]) -> str:
        key = (repo.id, int(pipeline["id"]))
        with self._lock:
            if key in self._failures:
                return self._failures[key]
        jobs = api.get(f"{prefix}/pipelines/{pipeline['id']}/jobs", {"scope[]": "failed"})
        traced: list[tuple[Mapping[str, Any], str]] = []
        for job in list(jobs)[:MAX_FAILED_JOBS]:
            try:
                trace = api.get(f"{prefix}/jobs/{job['id']}/trace", conditional=False) or ""
            except GitLabError as exc:
                trace = f"(trace not readable: {exc.message})"
            traced.append((job, str(trace)[-TRACE_TAIL_CHARS:]))
        output = api.clean(mapping.failing_output(pipeline, traced))
        with self._lock:
            self._failures[key] = output
            while len(self._failures) > 256:
                self._failures.popitem(last=False)
        return output

    def latest_review(self, repo_id: int, number: int) -> ReviewInfo | None:
        _, api, prefix = self._open(repo_id)
        return self._review(api, prefix, self._mr(api, prefix, number))

    def _review(self, api: GitLabApi, prefix: str, mr: Mapping[str, Any]) -> ReviewInfo | None:
        base = f"{prefix}/merge_requests/{mr['iid']}"
        discussions = api.get(f"{base}/discussions")
        approvals = api.get(f"{base}/approvals")
        try:
            reviewers = api.get(f"{base}/reviewers")
        except GitLabError:
            reviewers = []  # an instance older than reviewer states
        versions: list[dict[str, Any]] = []
        if any(not n.get("system") and n.get("type") != "DiffNote" and
               ((n.get("resolvable") and not n.get("resolved")) or "<!-- optio-review " in str(n.get("body") or ""))
               for d in discussions for n in d.get("notes") or ()):
            versions = api.get(f"{base}/versions")  # the head each note was written on
        review = mapping.review_from(head_sha=str(mr.get("sha") or ""), discussions=discussions,
                                     approvals=approvals, versions=versions, reviewers=reviewers)
        if review is None:
            return None
        return ReviewInfo(review.id, review.head_sha, review.verdict, api.clean(review.comments), review.author)

    def submit_review(self, repo_id: int, number: int, *, verdict: str, comments: str, author: str,
                      line_comments: tuple[LineComment, ...] = ()) -> ReviewInfo:
        """A note (approve) or an unresolved discussion (request changes), each line comment a diff discussion
        on the head, then GitLab's approve or unapprove."""
        if verdict not in ("approve", "request_changes"):
            raise Conflict(f"unknown verdict {verdict!r}", field="verdict")
        repo, api, prefix = self._open(repo_id)
        mr = self._mr(api, prefix, number)
        if mr.get("state") != "opened":
            raise Conflict(f"merge request !{number} is {mr.get('state')}", field="state")
        base = f"{prefix}/merge_requests/{number}"
        head = str(mr["sha"])
        marker = mapping.review_marker(author, verdict)
        text = comments.strip() or ("Changes requested." if verdict == "request_changes" else "Approved.")
        if verdict == "request_changes":
            first = api.post(f"{base}/discussions", {"body": marker + text})
            note_id = int(first["notes"][0]["id"])
        else:
            note_id = int(api.post(f"{base}/notes", {"body": marker + text})["id"])
        if verdict == "approve":
            self._resolve_own_requests(api, base, author)
        refs = mr.get("diff_refs") or {}
        for comment in line_comments:
            position = {"position_type": "text", "base_sha": refs.get("base_sha"), "start_sha": refs.get("start_sha"),
                        "head_sha": refs.get("head_sha") or head, "new_path": comment.path, "old_path": comment.path,
                        "new_line": comment.line}
            made = api.post(f"{base}/discussions", {"body": marker + comment.body, "position": position})
            note_id = max(note_id, int(made["notes"][0]["id"]))
            if verdict == "approve":  # a remark on an approval does not block it
                api.put(f"{base}/discussions/{made['id']}", {"resolved": True})
        try:
            if verdict == "approve":
                api.post(f"{base}/approve", {"sha": head})
            else:
                api.post(f"{base}/unapprove")
        except GitLabError as exc:
            # Not approved yet (unapprove) or the token's user may not approve (its own MR): the note stands.
            log.info("gitlab_approval_not_changed", repo=repo_id, mr=number, verdict=verdict, code=exc.response_code)
        full = "\n".join([text, *(c.as_text() for c in line_comments)])
        return ReviewInfo(note_id, head, verdict, api.clean(self.redact(full, repo.workspace_id, repo.id)), author)

    @staticmethod
    def _resolve_own_requests(api: GitLabApi, base: str, author: str) -> None:
        """An approval from a reviewer Optio posts for settles the changes that reviewer asked for earlier:
        its unresolved discussions would otherwise keep requesting changes on every later head."""
        for discussion in api.get(f"{base}/discussions") or ():
            notes = [n for n in discussion.get("notes") or () if not n.get("system")]
            first = mapping.marker_author(str(notes[0].get("body") or "")) if notes else None
            if first == author and any(n.get("resolvable") and not n.get("resolved") for n in notes):
                api.put(f"{base}/discussions/{discussion['id']}", {"resolved": True})

    def merge(self, repo_id: int, number: int, *, head_sha: str, message: str, force: bool = False) -> str:
        """Squash-merge the MR at ``head_sha`` (as the project's squash option allows) and delete its branch.

        GitLab's own gates apply whatever ``force`` says (Optio cannot lift them). What waiting fixes raises
        `Conflict` with the task re-queued; what a person must fix raises `MergeRefused` naming it.
        """
        _repo, api, prefix = self._open(repo_id)
        mr = self._mr(api, prefix, number)
        task_id = mapping.task_of_branch(mr.get("source_branch"))
        if mr.get("state") == "merged":
            return str(mr.get("squash_commit_sha") or mr.get("merge_commit_sha") or mr.get("sha"))
        if mr.get("state") != "opened":
            raise Conflict(f"merge request !{number} is {mr.get('state')}", field="state")
        if mr.get("sha") != head_sha:
            raise Conflict(f"merge request !{number} moved to {str(mr.get('sha'))[:10]}; not merging {head_sha[:10]}")
        base = f"{prefix}/merge_requests/{number}"
        if mr.get("draft"):
            mr = api.put(base, {"title": mapping.ready_title(str(mr["title"]))})
        project = api.get(prefix)
        squash = project.get("squash_option") != "never"
        params: dict[str, Any] = {"sha": head_sha, "squash": squash, "should_remove_source_branch": True}
        if squash:
            params["squash_commit_message"] = message
        else:
            params["merge_commit_message"] = message
        try:
            merged = api.put(f"{base}/merge", params)
        except GitLabError as exc:
            self._merge_refused(api, prefix, mr, exc, task_id)
            raise  # not reached: _merge_refused always raises
        if merged.get("state") != "merged":
            if task_id is not None:
                self._enqueue(task_id, "merge pending on GitLab", delay_s=MERGE_WAIT_S)
            raise Conflict(f"GitLab has not merged !{number} yet ({merged.get('detailed_merge_status')})")
        sha = str(merged.get("squash_commit_sha") or merged.get("merge_commit_sha") or merged.get("sha"))
        try:
            api.delete(f"{prefix}/repository/branches/{encode_path(str(mr['source_branch']))}")
        except GitLabError as exc:
            if exc.response_code != 404:  # GitLab removed it with the merge
                log.warning("gitlab_branch_not_deleted", repo=repo_id, mr=number, code=exc.response_code)
        if task_id is not None:
            self._enqueue(task_id, "merge request merged")
        return sha

    def _merge_refused(self, api: GitLabApi, prefix: str, mr: Mapping[str, Any], exc: GitLabError,
                       task_id: int | None) -> None:
        number = mr["iid"]
        code = exc.response_code
        if code == 409:  # "SHA does not match HEAD of source branch": the head moved
            if task_id is not None:
                self._enqueue(task_id, "merge request head moved")
            raise Conflict(f"merge request !{number} moved: {exc.message}") from None
        fresh = self._mr(api, prefix, int(number))
        detailed = str(fresh.get("detailed_merge_status") or "")
        if fresh.get("has_conflicts") or detailed in ("conflict", "broken_status", "need_rebase"):
            if task_id is not None:
                self._enqueue(task_id, "merge request conflicts")
            raise Conflict(f"merge request !{number} conflicts with {fresh.get('target_branch')}") from None
        if code in (401, 403) or "protected" in exc.message.lower():
            target = str(fresh.get("target_branch"))
            rule = self._protection(api, prefix, target)
            raise MergeRefused(f"GitLab refused to merge !{number} into {target}: "
                               f"{rule or 'the token may not merge into it'} ({exc.message})") from None
        if detailed in _MERGE_WAITS or (detailed == "ci_must_pass" and _pipeline_running(fresh)):
            # GitLab refuses a merge while it still settles a push (a 405 on an MR it calls mergeable); a refusal
            # that outlasts a few looks is not transient and goes to a person with GitLab's own words.
            key = (int(fresh.get("project_id") or 0), int(number), str(fresh.get("sha")))
            with self._lock:
                self._merge_waits[key] = waits = self._merge_waits.get(key, 0) + 1
            if waits > MAX_MERGE_WAITS:
                raise MergeRefused(f"GitLab keeps refusing to merge !{number} ({detailed}): {exc.message}") from None
            if task_id is not None:
                self._enqueue(task_id, f"merge waits: {detailed}", delay_s=MERGE_WAIT_S)
            raise Conflict(f"GitLab cannot merge !{number} yet ({detailed})") from None
        why = _MERGE_REFUSAL_WHY.get(detailed, detailed or "refused")
        raise MergeRefused(f"GitLab refused to merge !{number}: {why} ({exc.message})") from None

    def _protection(self, api: GitLabApi, prefix: str, branch: str) -> str | None:
        """The protected-branch rule on ``branch`` as a person reads it, None when it is not protected."""
        try:
            rule = api.get(f"{prefix}/protected_branches/{encode_path(branch)}")
        except GitLabError:
            return None
        who = ", ".join(str(level.get("access_level_description"))
                        for level in rule.get("merge_access_levels") or ()) or "no one"
        return f"protected branch {rule.get('name', branch)!r} allows merging to {who}"

    def close(self, repo_id: int, number: int) -> None:
        _, api, prefix = self._open(repo_id)
        mr = self._mr(api, prefix, number)
        if mr.get("state") == "opened":
            api.put(f"{prefix}/merge_requests/{number}", {"state_event": "close"})

    def rerun_ci(self, repo_id: int, number: int) -> None:
        """Retry the head pipeline's jobs, or start a pipeline on the source branch when there is none."""
        _, api, prefix = self._open(repo_id)
        mr = self._mr(api, prefix, number)
        if mr.get("state") != "opened":
            raise Conflict(f"merge request !{number} is {mr.get('state')}; CI runs only on open merge requests")
        pipeline = mr.get("head_pipeline")
        if pipeline and pipeline.get("sha") == mr.get("sha"):
            api.post(f"{prefix}/pipelines/{pipeline['id']}/retry")
        else:
            api.post(f"{prefix}/pipeline", query={"ref": str(mr["source_branch"])})
        task_id = mapping.task_of_branch(mr.get("source_branch"))
        if task_id is not None:
            self._enqueue(task_id, "CI re-run requested")

    # --- events ---------------------------------------------------------------------------------------

    def parse_event(self, repo_id: int, headers: Mapping[str, str], body: bytes) -> list[ForgeEvent]:
        """A GitLab webhook: ``X-Gitlab-Token`` must equal the repo's webhook secret (constant-time compare).

        Merge request, pipeline, note and push hooks become events for Optio's own MRs (source branch
        ``optio/<task>``); a push to the default branch is an event for each of Optio's open MRs on it.
        """
        repo = self._facts(repo_id)
        lowered = {k.lower(): v for k, v in headers.items()}
        expected = self._secret(repo, repo.webhook_secret) if repo.webhook_secret else None
        given = lowered.get("x-gitlab-token", "")
        if not expected:
            raise BadSignature(f"repo {repo_id} has no webhook secret: GitLab deliveries cannot be verified")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise BadSignature("X-Gitlab-Token does not match the repo's webhook secret")
        try:
            payload = json.loads(body)
        except ValueError:
            return []
        if not isinstance(payload, dict):
            return []
        events: list[ForgeEvent] = []
        for kind, iid, branch in mapping.hook_events(lowered.get("x-gitlab-event", ""), payload):
            task_id = mapping.task_of_branch(branch)
            if iid is not None and task_id is not None:
                with self._lock:
                    self._iids[(repo_id, task_id)] = iid
                events.append(ForgeEvent(repo_id, iid, kind))
            elif iid is None and task_id is not None:
                known = self._known_iid(repo_id, task_id)
                if known is not None:
                    events.append(ForgeEvent(repo_id, known, kind))
            elif iid is None and branch == repo.default_branch:
                for task in self._live_tasks(repo_id):
                    known = self._known_iid(repo_id, task)
                    if known is not None:
                        events.append(ForgeEvent(repo_id, known, "base_moved"))
        return events

    def _known_iid(self, repo_id: int, task_id: int) -> int | None:
        with self._lock:
            return self._iids.get((repo_id, task_id))

    def _live_tasks(self, repo_id: int) -> list[int]:
        with self.db.read() as session:
            return [t.task_id for t in hosted_forge.live_tasks_with_branch(session, repo_id)]

    def task_for_pr(self, repo_id: int, number: int) -> int | None:
        """The Optio task that owns MR ``number`` (its source branch is ``optio/<task>``), None for others."""
        with self._lock:
            for (repo, task), iid in self._iids.items():
                if repo == repo_id and iid == number:
                    return task
        _, api, prefix = self._open(repo_id)
        task_id = mapping.task_of_branch(self._mr(api, prefix, number).get("source_branch"))
        if task_id is not None:
            with self._lock:
                self._iids[(repo_id, task_id)] = number
        return task_id

    def poll_open_prs(self) -> int:
        """The safety net for lost webhooks: per GitLab repo with tasks on an MR, two conditional GETs (its
        open MRs and its latest pipelines); an unchanged repo answers 304 twice and nothing is enqueued."""
        with self.db.read() as session:
            repos = [(r.id, [t.task_id for t in hosted_forge.live_tasks_with_branch(session, r.id)
                             if t.state == "pr_opened"])
                     for r in hosted_forge.repos_of_forge(session, self.name)]
        looked = 0
        for repo_id, tasks in repos:
            if not tasks:
                continue
            try:
                looked += self._poll_repo(repo_id, tasks)
            except ForgeBusy as exc:
                log.info("gitlab_poll_deferred", repo=repo_id, retry_after_s=exc.retry_after_s)
            except Exception as exc:  # one repo's trouble must not stop the others' safety net
                log.warning("gitlab_poll_failed", repo=repo_id, error=str(exc))
        return looked

    def _poll_repo(self, repo_id: int, tasks: list[int]) -> int:
        _repo, api, prefix = self._open(repo_id)
        mrs = api.get(f"{prefix}/merge_requests", {"state": "opened", "order_by": "updated_at", "sort": "desc"})
        pipelines = api.get(f"{prefix}/pipelines", {"order_by": "updated_at", "sort": "desc", "per_page": 50})
        by_branch = {str(m.get("source_branch")): m for m in mrs}
        changed: list[int] = []
        for task_id in tasks:
            branch = branch_for_task(task_id)
            mr = by_branch.get(branch)
            runs = tuple((p.get("id"), p.get("status"), p.get("sha")) for p in pipelines if p.get("ref") == branch)
            seen = (None,) if mr is None else (
                mr.get("sha"), mr.get("updated_at"), mr.get("merge_status"), mr.get("has_conflicts"),
                mr.get("user_notes_count"), runs)
            if mr is not None:
                with self._lock:
                    self._iids[(repo_id, task_id)] = int(mr["iid"])
            with self._lock:
                before = self._seen.get((repo_id, task_id))
                self._seen[(repo_id, task_id)] = seen
            if before != seen:
                changed.append(task_id)
        for task_id in changed:
            self._enqueue(task_id, "GitLab merge request changed")
        return len(tasks)

    def recover(self) -> None:
        return None

    def shutdown(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            client.gl.session.close()


def _pipeline_running(mr: Mapping[str, Any]) -> bool:
    pipeline = mr.get("head_pipeline") or {}
    return mapping.ci_status(str(pipeline.get("status") or "pending"))[0] == "pending"
