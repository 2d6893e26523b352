"""A CI run ends what a dead server left running of the same run before it starts, without a restart's recovery.

With other replicas alive a starting server does not recover the forge, and the PR watcher reruns the CI a dead
replica left pending: the rerun itself must end the old command. Real SQLite, real git remote, the real local
forge and its CI threads; the dead server's CI command is a process carrying that run's tag.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.integration.test_merge_recovery import open_pr
from tests.support.forge_db import repo_world

from optio.forge.local import LocalForge
from optio.runtime import process_group
from optio.store.models import CiRun, PullRequest


def test_a_ci_run_first_ends_what_a_dead_server_left_of_it(tmp_path: Path) -> None:
    db, _remote, repo_id = repo_world(tmp_path, ci_command="true")
    forge = LocalForge(db, tmp_path / "data")
    # The first PR of a fresh database is PR id 1: its CI runs under the lock (and the tag) "ci-pr-1".
    left = subprocess.Popen(["sleep", "300"], start_new_session=True,
                            env={**os.environ, process_group.TAG_ENV: forge._ci_tag("ci-pr-1")})
    try:
        number, head = open_pr(forge, tmp_path, repo_id, 1)
        with db.read() as session:
            pr = session.query(PullRequest).filter_by(repo_id=repo_id, number=number).one()
            assert pr.id == 1
        deadline = time.monotonic() + 30
        status = "pending"
        while status == "pending" and time.monotonic() < deadline:
            time.sleep(0.05)
            with db.read() as session:
                status = session.query(CiRun).filter_by(pr_id=1, head_sha=head).one().status
        assert status == "passing"
        # SIGTERM: ended before the run started. The SIGKILL a run sends its own tag once it is over would have
        # ended it too, but only after the two ran side by side.
        assert left.wait(timeout=10) == -signal.SIGTERM
    finally:
        if left.poll() is None:
            left.kill()
            left.wait()
        forge.shutdown()
