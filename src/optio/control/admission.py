"""Exact concurrency caps: the last check happens inside the transaction that starts a run.

The decision sees capacity in its snapshot, but several workers decide at once, so two of them could each
see one free slot and both start. Re-counting inside the start transaction closes that race (see
`optio.store.admission` for how the starts are serialized).
"""

from __future__ import annotations

from optio.store import admission, job_runs, repo_tasks
from optio.store.session import Session


def admit_job_run(session: Session, run_id: int, job_id: int, max_global: int, max_job: int | None) -> bool:
    admission.serialize_starts(session)
    if admission.active_runs(session) >= max_global:
        return False
    if max_job is None:
        return True
    return job_runs.running_for_job(session, job_id, except_run=run_id) < max_job


def admit_repo_task(session: Session, task_id: int, repo_id: int, max_global: int, max_repo: int) -> bool:
    admission.serialize_starts(session)
    if admission.active_runs(session) >= max_global:
        return False
    return repo_tasks.active_in_repo(session, repo_id, except_task=task_id) < max_repo
