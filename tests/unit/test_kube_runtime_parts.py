"""The Kubernetes runtime's pure parts and its git exchange with pods, without a cluster."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from optio.runtime.kubernetes import labels_for, parse_timestamp, pod_name, pseudo_pid, since_time
from optio.runtime.pod_git import UNCOMMITTED_MARKER, PodGit


def test_pod_names_are_dns_labels_unique_per_key() -> None:
    assert pod_name("repo_task:12:3") == "optio-repo-task-12-3"
    assert pod_name("repo_task:12:3:review") == "optio-repo-task-12-3-review"
    long_a, long_b = "repo_task:1:1:" + "x" * 80, "repo_task:1:1:" + "x" * 79 + "y"
    assert len(pod_name(long_a)) <= 63 and pod_name(long_a) != pod_name(long_b)


def test_labels_name_kind_run_attempt_and_a_stable_pid() -> None:
    labels = labels_for("repo_task:12:3")
    assert labels["optio.dev/run-kind"] == "repo_task" and labels["optio.dev/run-id"] == "12"
    assert labels["optio.dev/attempt"] == "3" and labels["optio.dev/purpose"] == "agent"
    assert labels["optio.dev/pid"] == str(pseudo_pid("repo_task:12:3")) and pseudo_pid("repo_task:12:3") > 0


def test_kubelet_timestamps_parse_to_nanoseconds_and_resume_at_their_second() -> None:
    ns = parse_timestamp("2026-12-02T04:30:01.123456789Z")
    assert ns % 1_000_000_000 == 123456789
    assert parse_timestamp("2026-12-02T04:30:01.5Z") == ns - 123456789 + 500_000_000
    assert parse_timestamp("2026-12-02T06:30:01.123456789+02:00") == ns
    assert since_time(ns) == "2026-12-02T04:30:01Z"
    with pytest.raises(ValueError):
        parse_timestamp("yesterday")


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@e", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout


def test_the_exchange_takes_back_commits_and_leaves_uncommitted_work_uncommitted(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    _git("init", "-q", "-b", "task", cwd=work)
    (work / "a.txt").write_text("a\n")
    _git("add", "a.txt", cwd=work)
    _git("commit", "-qm", "base", cwd=work)
    pods = PodGit(tmp_path / "pod-git")
    pods.publish("optio-repo-task-1-1", work)
    assert pods.authorized("optio-repo-task-1-1", pods.token("optio-repo-task-1-1"))
    assert not pods.authorized("optio-repo-task-2-1", pods.token("optio-repo-task-1-1"))
    assert not pods.collect("optio-repo-task-1-1", work)  # nothing handed back yet

    # What a pod does: clone base, commit, leave an uncommitted change, push result (any other ref is refused).
    pod = tmp_path / "pod"
    repo = pods.repo("optio-repo-task-1-1")
    _git("clone", "-q", "--branch", "base", str(repo), str(pod), cwd=tmp_path)
    (pod / "b.txt").write_text("b\n")
    _git("add", "b.txt", cwd=pod)
    _git("commit", "-qm", "agent commit", cwd=pod)
    (pod / "a.txt").write_text("changed\n")
    _git("commit", "-qam", UNCOMMITTED_MARKER, cwd=pod)
    refused = subprocess.run(["git", "push", "-q", "origin", "HEAD:refs/heads/main"], cwd=pod, capture_output=True,
                             text=True)
    assert refused.returncode != 0 and "only refs/heads/result" in refused.stderr
    _git("push", "-q", "origin", "HEAD:refs/heads/result", cwd=pod)

    assert pods.collect("optio-repo-task-1-1", work)
    assert _git("log", "--format=%s", cwd=work).splitlines() == ["agent commit", "base"]
    assert (work / "b.txt").read_text() == "b\n" and (work / "a.txt").read_text() == "changed\n"
    assert _git("status", "--porcelain", cwd=work).strip() == "M a.txt"
    pods.remove("optio-repo-task-1-1")
    assert not repo.exists()
