"""GitLab's shapes as Optio's: merge requests, pipelines, discussions and webhooks, with no I/O.

Field names and values follow GitLab's REST API v4 and webhook payloads (the same ones the fake in
``tests/support/fake_gitlab.py`` is checked against).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from optio.forge.base import CiInfo, DiffFile, PullRequestInfo, ReviewInfo

BRANCH_PREFIX = "optio/"
DEFAULT_API_URL = "https://gitlab.com"

# Pipeline statuses (GitLab's `Ci::HasStatus`): still going, passed, failed, or never tested the code.
_PENDING = {"created", "waiting_for_resource", "preparing", "pending", "running", "scheduled", "manual"}
_PASSING = {"success", "skipped"}
_FAILING = {"failed"}
_NOT_RUN = {"canceled", "canceling"}

MR_STATES = {"opened": "open", "merged": "merged", "closed": "closed", "locked": "open"}

# Optio's own reviews carry who wrote them (the token's user posts for every reviewer) in a hidden line.
_MARKER = re.compile(r"\A<!-- optio-review author=(?P<author>\S+) verdict=(?P<verdict>\w+) -->\n?")


def project_path(remote_url: str) -> str:
    """``group/sub/proj`` of a GitLab remote (``https://host/group/sub/proj(.git)`` or ``git@host:group/proj``)."""
    path = urlsplit(remote_url).path if "://" in remote_url else remote_url.split(":", 1)[-1]
    path = path.strip("/").removesuffix(".git")
    if "/-/" in path:
        path = path.split("/-/", 1)[0]
    if path.count("/") < 1:
        raise ValueError(f"{remote_url!r} does not name a GitLab project (group/project)")
    return path


def api_base(remote_url: str, api_url: str | None) -> str:
    """The instance's root URL for python-gitlab: the repo's ``api_url``, else the remote's own host.

    ``api_url`` may be given with or without ``/api/v4``. Without one, an https remote's host is the
    instance (gitlab.com for gitlab.com remotes, the self-managed host otherwise).
    """
    if api_url:
        return api_url.rstrip("/").removesuffix("/api/v4")
    if remote_url.startswith(("https://", "http://")):
        parts = urlsplit(remote_url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}"
    return DEFAULT_API_URL


def task_of_branch(branch: str | None) -> int | None:
    if not branch or not branch.startswith(BRANCH_PREFIX):
        return None
    rest = branch.removeprefix(BRANCH_PREFIX)
    return int(rest) if rest.isdigit() else None


def closes_line(ticket_ref: str | None, project: str) -> str | None:
    """``Closes #N`` for a task that came from an issue of this project (GitLab closes it on merge)."""
    if not ticket_ref:
        return None
    ref = ticket_ref.strip().removeprefix("gitlab:")
    m = re.fullmatch(r"(?:https?://[^/]+/)?(?P<proj>[\w.\-]+(?:/[\w.\-]+)+)/-/issues/(?P<n>\d+)", ref)
    if m:
        return f"Closes #{m['n']}" if m["proj"] == project else f"Closes {m['proj']}#{m['n']}"
    m = re.fullmatch(r"(?P<proj>[\w.\-]+(?:/[\w.\-]+)+)?#(?P<n>\d+)", ref)
    if m:
        return f"Closes #{m['n']}" if m["proj"] in (None, project) else f"Closes {m['proj']}#{m['n']}"
    return None


def draft_title(title: str) -> str:
    return title if title.lower().startswith("draft:") else f"Draft: {title}"


def ready_title(title: str) -> str:
    return re.sub(r"^\s*(?:\[draft\]|\(draft\)|draft:|draft\s*-)\s*", "", title, flags=re.IGNORECASE)


def mergeable(mr: Mapping[str, Any]) -> bool | None:
    """GitLab's mergeability: conflicts are False; a computed clean merge True; still checking None."""
    if mr.get("has_conflicts"):
        return False
    status = mr.get("merge_status")
    if status == "can_be_merged":
        return True
    if status in ("cannot_be_merged", "cannot_be_merged_recheck"):
        return False
    return None


def pr_info(mr: Mapping[str, Any], *, base_sha: str | None = None) -> PullRequestInfo:
    state = MR_STATES.get(str(mr.get("state")), "closed")
    return PullRequestInfo(
        number=int(mr["iid"]), state=state, title=str(mr.get("title") or ""),
        head_branch=str(mr.get("source_branch") or ""), head_sha=str(mr.get("sha") or ""),
        base_branch=str(mr.get("target_branch") or ""),
        mergeable=mergeable(mr) if state == "open" else None, conflicting_files=(),
        merged_sha=(mr.get("squash_commit_sha") or mr.get("merge_commit_sha") or mr.get("sha"))
        if state == "merged" else None,
        base_sha=base_sha,
    )


def ci_status(pipeline_status: str) -> tuple[str, str | None]:
    """(Optio's CI status, failure kind) of a pipeline status: a canceled pipeline tested nothing."""
    if pipeline_status in _PASSING:
        return "passing", None
    if pipeline_status in _FAILING:
        return "failing", None
    if pipeline_status in _NOT_RUN:
        return "error", "could_not_run"
    return "pending", None


def ci_info(head_sha: str, pipeline: Mapping[str, Any] | None, output: str = "") -> CiInfo:
    if pipeline is None or pipeline.get("sha") != head_sha:
        return CiInfo(head_sha=head_sha, status="pending", output="")
    status, kind = ci_status(str(pipeline.get("status")))
    duration = pipeline.get("duration")
    return CiInfo(head_sha=head_sha, status=status, output=output if status in ("failing", "error") else "",
                  failure_kind=kind, duration_s=float(duration) if isinstance(duration, int | float) else None)


def failing_output(pipeline: Mapping[str, Any], jobs: Sequence[tuple[Mapping[str, Any], str]]) -> str:
    """The failing jobs' names and the tail of each one's trace, as the agent reads them."""
    lines = [f"GitLab pipeline #{pipeline.get('id')} {pipeline.get('status')} on "
             f"{str(pipeline.get('sha') or '')[:12]} ({pipeline.get('web_url', '')})"]
    if not jobs:
        lines.append("(no failed job reported)")
    for job, tail in jobs:
        reason = f", {job['failure_reason']}" if job.get("failure_reason") else ""
        lines.append(f"\nfailed job: {job.get('name')} (stage {job.get('stage')}{reason})")
        lines.append("--- job trace (tail) ---")
        lines.append(tail.rstrip())
    return "\n".join(lines) + "\n"


def review_marker(author: str, verdict: str) -> str:
    return f"<!-- optio-review author={author} verdict={verdict} -->\n"


def marker_author(body: str) -> str | None:
    """The reviewer Optio posted a note for (from its marker); None for anyone else's note."""
    m = _MARKER.match(body)
    return m["author"] if m else None


def _author(note: Mapping[str, Any]) -> tuple[str, str]:
    """(author, body) of a note: Optio's marker names the reviewer it posted for, else the GitLab user."""
    body = str(note.get("body") or "")
    m = _MARKER.match(body)
    if m:
        return m["author"], body[m.end():]
    user = note.get("author") or {}
    return f"gitlab:{user.get('username', 'unknown')}", body


def _head_at(created_at: str, versions: Sequence[Mapping[str, Any]], fallback: str) -> str:
    """The MR's head when a note was written: the newest diff version made at or before it."""
    made = [v for v in versions if str(v.get("created_at") or "") <= created_at]
    if not made:
        return fallback
    return str(max(made, key=lambda v: (str(v.get("created_at")), int(v.get("id") or 0)))["head_commit_sha"])


def line_comment_text(note: Mapping[str, Any], body: str) -> str | None:
    position = note.get("position") or {}
    if note.get("type") != "DiffNote" or not position:
        return None
    path = position.get("new_path") or position.get("old_path")
    line = position.get("new_line") or position.get("old_line")
    return f"{path}:{line}: {body.strip()}"


def review_from(*, head_sha: str, discussions: Sequence[Mapping[str, Any]], approvals: Mapping[str, Any] | None,
                versions: Sequence[Mapping[str, Any]] = (),
                reviewers: Sequence[Mapping[str, Any]] = ()) -> ReviewInfo | None:
    """The MR's review as Optio's verdict.

    Unresolved discussions (or a reviewer whose state is ``requested_changes``) are changes requested: the
    general notes' bodies, then each diff note as ``path:line: text``. Its id is the newest such note's, so
    a new comment is a new review; its head is the one the notes were made on. Otherwise an approval that
    meets the MR's rule (``approvals_left`` 0) approves the current head.
    """
    open_notes: list[Mapping[str, Any]] = []
    for discussion in discussions:
        notes = [n for n in discussion.get("notes") or () if not n.get("system")]
        if any(n.get("resolvable") and not n.get("resolved") for n in notes):
            open_notes.extend(notes)
    asked = [r for r in reviewers if r.get("state") == "requested_changes"]
    if open_notes or asked:
        bodies: list[str] = []
        lines: list[str] = []
        for note in sorted(open_notes, key=lambda n: int(n.get("id") or 0)):
            _, body = _author(note)
            text = line_comment_text(note, body)
            if text is not None:
                lines.append(text)
            elif body.strip():
                bodies.append(body.strip())
        if not open_notes:
            bodies.append("Changes requested by " + ", ".join(
                str((r.get("user") or {}).get("username")) for r in asked) + ".")
        latest = max(open_notes, key=lambda n: int(n.get("id") or 0)) if open_notes else None
        if latest is not None:
            author, _ = _author(latest)
            position = latest.get("position") or {}
            at = str(position.get("head_sha") or "") or _head_at(str(latest.get("created_at") or ""), versions,
                                                                head_sha)
            review_id = int(latest["id"])
        else:
            author = f"gitlab:{(asked[0].get('user') or {}).get('username', 'unknown')}"
            at, review_id = head_sha, 0
        return ReviewInfo(id=review_id, head_sha=at, verdict="request_changes",
                          comments="\n".join(bodies + lines).strip(), author=author)
    if approvals and approvals.get("approved_by") and not approvals.get("approvals_left"):
        user = (approvals["approved_by"][-1].get("user") or {})
        return ReviewInfo(id=0, head_sha=head_sha, verdict="approve", comments="",
                          author=f"gitlab:{user.get('username', 'unknown')}")
    return _optio_approval(discussions, versions, head_sha)


def _optio_approval(discussions: Sequence[Mapping[str, Any]], versions: Sequence[Mapping[str, Any]],
                    head_sha: str) -> ReviewInfo | None:
    """The approval a review agent posted through Optio when GitLab would not record it as one (the token's
    user is the MR's author, and GitLab does not let authors approve): its note, on the head it was made at.
    GitLab's own approval rule still gates the merge."""
    marked = [(n, m) for d in discussions for n in d.get("notes") or ()
              if not n.get("system") and (m := _MARKER.match(str(n.get("body") or "")))]
    if not marked:
        return None
    note, m = max(marked, key=lambda pair: int(pair[0].get("id") or 0))
    if m["verdict"] != "approve":
        return None
    at = _head_at(str(note.get("created_at") or ""), versions, head_sha)
    return ReviewInfo(id=int(note["id"]), head_sha=at, verdict="approve",
                      comments=str(note.get("body") or "")[m.end():].strip(), author=m["author"])


def hook_events(event: str, payload: Mapping[str, Any]) -> list[tuple[str, int | None, str | None]]:
    """What one webhook delivery is about: (kind, MR iid or None, source branch or None) per affected MR.

    ``push`` to a branch that is not Optio's comes back with iid None and the branch: the caller decides
    whether it is a base that Optio's open MRs target.
    """
    attrs = payload.get("object_attributes") or {}
    if event == "Merge Request Hook":
        action = str(attrs.get("action") or "update")
        kind = {"merge": "merged", "close": "closed", "approved": "review", "approval": "review",
                "unapproved": "review", "unapproval": "review"}.get(action, "updated")
        return [(kind, _int(attrs.get("iid")), attrs.get("source_branch"))]
    if event == "Pipeline Hook":
        mr = payload.get("merge_request") or {}
        if mr:
            return [("ci", _int(mr.get("iid")), mr.get("source_branch"))]
        return [("ci", None, attrs.get("ref"))]
    if event == "Note Hook":
        if attrs.get("noteable_type") != "MergeRequest":
            return []
        mr = payload.get("merge_request") or {}
        return [("review", _int(mr.get("iid")), mr.get("source_branch"))]
    if event == "Push Hook":
        ref = str(payload.get("ref") or "")
        if not ref.startswith("refs/heads/"):
            return []
        return [("push", None, ref.removeprefix("refs/heads/"))]
    return []


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def diff_file(entry: Mapping[str, Any]) -> DiffFile:
    """One entry of an MR's ``/diffs``: GitLab gives the unified diff, not counts, so they are counted from its
    lines (hunk headers aside); git's "Binary files ... differ" marks a binary file."""
    text = str(entry.get("diff") or "")
    binary = text.startswith("Binary files")
    added = deleted = 0
    if not binary:
        for line in text.splitlines():
            if line.startswith("+"):
                added += 1
            elif line.startswith("-"):
                deleted += 1
    status = ("added" if entry.get("new_file") else "deleted" if entry.get("deleted_file")
              else "renamed" if entry.get("renamed_file") else "modified")
    return DiffFile(path=str(entry["new_path"]), status=status, additions=added, deletions=deleted, binary=binary,
                    old_path=str(entry["old_path"]) if status == "renamed" else None)

