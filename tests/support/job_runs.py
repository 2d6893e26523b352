"""Running job runs written straight into a store, for tests of what hangs off a run (its logs, its process)."""

from __future__ import annotations

from optio.store import workspaces
from optio.store.db import Database
from optio.store.models import Job, JobRun


def running_job_runs(db: Database, count: int = 1) -> tuple[int, list[int]]:
    """(the default workspace's id, the ids of `count` running runs of one script job in it)."""
    with db.write() as session:
        ws = workspaces.ensure_default(session).id
        job = Job(workspace_id=ws, name="j", prompt_template="p", agent_type="script", agent_config={})
        session.add(job)
        session.flush()
        runs = [JobRun(workspace_id=ws, job_id=job.id, prompt="p", state="running") for _ in range(count)]
        session.add_all(runs)
        session.flush()
        return ws, [run.id for run in runs]
