"""A run's stored output: bounded in size with one marker, and one order across stdout and stderr."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from tests.support.optio_server import OptioServer

CAP = 20_000


def all_lines(server: OptioServer, run_id: int) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    after = 0
    while True:
        page = server.api("GET", f"/api/runs/{run_id}/logs", params={"after": after, "limit": 1000}).json()
        lines.extend(page["items"])
        if not page["items"]:
            return lines
        after = page["last_seq"]


def run_job(server: OptioServer, name: str, command: str) -> dict[str, Any]:
    server.cli("job", "create", "--name", name, "--prompt", "p", "--command", command, check=True)
    res = server.cli("job", "run", name, "--wait", "--json", timeout=120)
    assert res.returncode == 0, (res.stdout, res.stderr, server.log()[-3000:])
    return json.loads(res.stdout)


def test_output_past_the_cap_is_dropped_with_one_marker_and_the_run_completes(tmp_path: Path) -> None:
    server = OptioServer(tmp_path / "data", env={"OPTIO_MAX_RUN_LOG_BYTES": str(CAP)}).start()
    try:
        # ~200 KB of output in 2000 lines, ten times the cap, on both streams; then a file in the run's own
        # HOME (the one place both the sandboxed script and this test reach) proves it ran to its end.
        script = ('i=0; while [ $i -lt 2000 ]; do echo "line $i $(printf %080d 0)"; '
                  '[ $((i % 100)) -eq 0 ] && echo "err $i" >&2; i=$((i+1)); done; touch "$HOME/done"')
        run = run_job(server, "loud", script)
        assert run["state"] == "completed", run
        assert (server.data_dir / "homes" / f"job_run-{run['id']}" / "done").exists()
        lines = all_lines(server, run["id"])
        markers = [line for line in lines if "log size cap" in line["text"]]
        assert len(markers) == 1 and markers[0]["stream"] == "optio", markers
        assert lines[-1] == markers[0]  # nothing is stored after the marker
        stored = sum(len(line["text"].encode()) + 1 for line in lines[:-1])
        assert CAP - 200 < stored <= CAP
        assert lines[0]["text"].startswith("line 0 ")
        assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))
        with sqlite3.connect(server.data_dir / "optio.db") as db:
            kept, dropped = db.execute("SELECT log_bytes, log_dropped_bytes FROM job_runs WHERE id = ?",
                                       (run["id"],)).fetchone()
        assert kept == stored and dropped > 150_000
        # A second run of the same job has a cap of its own.
        again = server.cli("job", "run", "loud", "--wait", "--json", timeout=120)
        second = json.loads(again.stdout)
        assert second["state"] == "completed"
        assert sum("log size cap" in line["text"] for line in all_lines(server, second["id"])) == 1
    finally:
        server.stop()


def test_stdout_and_stderr_lines_are_stored_in_the_order_they_were_printed(optio_server: OptioServer) -> None:
    # A short pause between lines (far below the runtime's poll tick) so "printed order" is well defined.
    script = ('i=1; while [ $i -le 40 ]; do echo "out $i"; sleep 0.02; echo "err $i" >&2; sleep 0.02; '
              'i=$((i+1)); done; printf "no newline at the end" >&2')
    run = run_job(optio_server, "interleaved", script)
    assert run["state"] == "completed", run
    lines = all_lines(optio_server, run["id"])
    expected = [(s, f"{w} {i}") for i in range(1, 41) for s, w in (("stdout", "out"), ("stderr", "err"))]
    assert [(line["stream"], line["text"]) for line in lines] == [*expected, ("stderr", "no newline at the end")]
    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))
    cli = optio_server.cli("run", "logs", str(run["id"]), check=True)
    assert cli.stdout.splitlines() == [f"out {i}" for i in range(1, 41)]
    assert cli.stderr.splitlines()[:2] == ["err 1", "err 2"]
