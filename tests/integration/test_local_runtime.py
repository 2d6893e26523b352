"""LocalRuntime against real processes: output, exits, timeouts, kills and adoption after a restart."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.sandbox import runtime_sandbox

from optio.runtime.base import LaunchSpec, ProcessInfo, RuntimeLaunchError
from optio.runtime.local import LocalRuntime, read_process_file
from optio.runtime.tail import MAX_BATCH_LINES, MAX_LINE_BYTES, FileTail

WAIT_S = 20.0


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


@dataclass
class Batch:
    key: str
    stream: str
    lines: list[str]
    offset: int


@dataclass
class RecordingSink:
    """Records what the runtime reports; can be told to fail a number of calls first."""

    fail_output: int = 0
    fail_exit: int = 0
    batches: list[Batch] = field(default_factory=list)
    exits: list[tuple[str, int | None, str]] = field(default_factory=list)
    exit_attempts: int = 0
    output_attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_output(self, key: str, stream: str, lines: list[str], offset: int) -> None:
        with self.lock:
            self.output_attempts += 1
            if self.fail_output > 0:
                self.fail_output -= 1
                raise RuntimeError("database is locked")
            self.batches.append(Batch(key, stream, list(lines), offset))

    def on_exit(self, key: str, exit_code: int | None, reason: str) -> None:
        with self.lock:
            self.exit_attempts += 1
            if self.fail_exit > 0:
                self.fail_exit -= 1
                raise RuntimeError("database is locked")
            self.exits.append((key, exit_code, reason))

    def lines(self, stream: str = "stdout", key: str | None = None) -> list[str]:
        with self.lock:
            return [
                line for b in self.batches if b.stream == stream and (key is None or b.key == key) for line in b.lines
            ]

    def last_offset(self, stream: str) -> int:
        with self.lock:
            offsets = [b.offset for b in self.batches if b.stream == stream]
        return offsets[-1] if offsets else 0

    def exit_for(self, key: str) -> tuple[int | None, str]:
        wait_for(lambda: any(e[0] == key for e in self.exits), f"exit of {key}")
        with self.lock:
            matches = [e for e in self.exits if e[0] == key]
        assert len(matches) == 1
        return matches[0][1], matches[0][2]


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def runtime(sink: RecordingSink):
    rt = LocalRuntime(sink, poll_interval_s=0.05, sandbox=runtime_sandbox())
    yield rt
    rt.shutdown()


_spec_counter = 0


def make_spec(tmp_path: Path, script: str, **kwargs: object) -> LaunchSpec:
    global _spec_counter
    _spec_counter += 1
    key = f"job_run:{_spec_counter}:1"
    log_dir = tmp_path / "logs" / key.replace(":", "_")
    return LaunchSpec(
        key=key,
        argv=["/bin/sh", "-c", script],
        env=kwargs.pop("env", {}),  # type: ignore[arg-type]
        cwd=kwargs.pop("cwd", tmp_path),  # type: ignore[arg-type]
        log_dir=log_dir,
        **kwargs,  # type: ignore[arg-type]
    )


def group_members(pgid: int) -> list[psutil.Process]:
    """Processes of the group that are still running (zombies have ended)."""
    alive = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return alive


def descendants_alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            continue
    return alive


def test_lines_arrive_complete_in_order_with_offsets(tmp_path: Path, runtime, sink) -> None:
    spec = make_spec(tmp_path, 'i=1; while [ $i -le 1000 ]; do echo "line $i"; i=$((i+1)); done')
    runtime.launch(spec)
    assert sink.exit_for(spec.key) == (0, "exited")

    expected = [f"line {i}" for i in range(1, 1001)]
    assert sink.lines("stdout") == expected
    consumed = 0
    for batch in sink.batches:
        consumed += sum(len(line) + 1 for line in batch.lines)
        assert batch.offset == consumed
    assert consumed == (spec.log_dir / "stdout.log").stat().st_size
    # The watcher forgets itself after the exit is reported, so a moment later, not at once.
    wait_for(lambda: spec.key not in runtime.active_keys(), "the watcher to be forgotten")


def test_large_output_is_batched_without_loss(tmp_path: Path, runtime, sink) -> None:
    spec = make_spec(tmp_path, "seq 1 100000")
    runtime.launch(spec)
    sink.exit_for(spec.key)
    assert sink.lines() == [str(i) for i in range(1, 100001)]
    assert all(len(b.lines) <= MAX_BATCH_LINES for b in sink.batches)
    assert len(sink.batches) < 10000


def test_stderr_is_kept_apart(tmp_path: Path, runtime, sink) -> None:
    spec = make_spec(tmp_path, "echo out1; echo err1 >&2; echo out2; echo err2 >&2")
    runtime.launch(spec)
    sink.exit_for(spec.key)
    assert sink.lines("stdout") == ["out1", "out2"]
    assert sink.lines("stderr") == ["err1", "err2"]
    assert sink.last_offset("stderr") == len("err1\nerr2\n")


@pytest.mark.parametrize("code", [0, 3])
def test_exit_codes(tmp_path: Path, runtime, sink, code: int) -> None:
    spec = make_spec(tmp_path, f"exit {code}")
    runtime.launch(spec)
    assert sink.exit_for(spec.key) == (code, "exited")
    assert (spec.log_dir / "exit_code").read_text().strip() == str(code)


def test_pipeline_exit_code_is_recorded_atomically(tmp_path: Path, runtime, sink) -> None:
    spec = make_spec(tmp_path, "echo hi | sh -c 'cat; exit 5'")
    runtime.launch(spec)
    assert sink.exit_for(spec.key) == (5, "exited")
    assert sink.lines() == ["hi"]
    assert sorted(p.name for p in spec.log_dir.iterdir()) == [
        "exit_code",
        "launch.json",
        "process.json",
        "stderr.log",
        "stdout.log",
        "wrapper.pid",
    ]


def test_partial_line_is_held_until_completed(tmp_path: Path, runtime, sink) -> None:
    spec = make_spec(tmp_path, "printf 'abc'; sleep 0.5; printf 'def\\nlast without newline'")
    runtime.launch(spec)
    sink.exit_for(spec.key)
    assert sink.lines() == ["abcdef", "last without newline"]
    assert sink.last_offset("stdout") == len("abcdef\nlast without newline")


def test_output_is_delivered_while_running(tmp_path: Path, runtime, sink) -> None:
    go = tmp_path / "go"
    spec = make_spec(tmp_path, f"echo early; while [ ! -f {go} ]; do sleep 0.05; done; echo late")
    runtime.launch(spec)
    wait_for(lambda: sink.lines() == ["early"], "the first line while the process runs")
    assert sink.exits == []
    go.touch()
    sink.exit_for(spec.key)
    assert sink.lines() == ["early", "late"]


def test_an_exit_and_a_kill_are_noticed_at_once_not_at_the_next_poll(tmp_path: Path) -> None:
    """With a poll interval longer than the wait below, only the leader's exit (or the kill's wake) can end the
    watcher's idle wait in time."""
    sink = RecordingSink()
    rt = LocalRuntime(sink, poll_interval_s=3600)
    try:
        quick = make_spec(tmp_path, "sleep 0.2; echo done; exit 3")
        rt.launch(quick)
        assert sink.exit_for(quick.key) == (3, "exited")
        assert sink.lines(key=quick.key) == ["done"]
        slow = make_spec(tmp_path, "sleep 600")
        rt.launch(slow)
        time.sleep(0.2)
        rt.kill(slow.key, grace_s=0.5)
        assert sink.exit_for(slow.key)[1] == "killed"
    finally:
        rt.shutdown()


def test_a_kill_is_carried_through_between_polls_when_a_straggler_ignores_sigterm(tmp_path: Path) -> None:
    """The leader dies at the SIGTERM, one child of its group ignores it. No fd tells the watcher when that child
    ends, so with a poll interval of an hour only its own deadlines (SIGKILL after the grace) and a short pace
    while stragglers remain can end the run in time."""
    sink = RecordingSink()
    rt = LocalRuntime(sink, poll_interval_s=3600)
    try:
        ready = tmp_path / "ready"
        spec = make_spec(tmp_path, f"(trap '' TERM; touch {ready}; exec sleep 600) & sleep 600")
        info = rt.launch(spec)
        wait_for(ready.exists, "the straggler to ignore SIGTERM")
        rt.kill(spec.key, grace_s=0.3)
        assert sink.exit_for(spec.key)[1] == "killed"
        assert group_members(info.pid) == []
    finally:
        rt.shutdown()


def test_a_timeout_is_noticed_between_polls(tmp_path: Path) -> None:
    """A run's timeout is a deadline the watcher sleeps towards, not something it sees at its next poll."""
    sink = RecordingSink()
    rt = LocalRuntime(sink, poll_interval_s=3600)
    try:
        spec = make_spec(tmp_path, "sleep 600", timeout_s=0.3)
        rt.launch(spec)
        assert sink.exit_for(spec.key)[1] == "timeout"
    finally:
        rt.shutdown()


def test_timeout_kills_the_group(tmp_path: Path, runtime, sink) -> None:
    spec = make_spec(tmp_path, "sleep 600 & sleep 600; wait", timeout_s=0.5)
    info = runtime.launch(spec)
    wait_for(lambda: len(group_members(info.pid)) >= 3, "the group to start")
    members = group_members(info.pid)
    _, reason = sink.exit_for(spec.key)
    assert reason == "timeout"
    assert descendants_alive(members) == []
    assert group_members(info.pid) == []


def test_kill_ends_every_process_of_the_group(tmp_path: Path, runtime, sink) -> None:
    spec = make_spec(tmp_path, "sleep 600 & sleep 600; wait")
    info = runtime.launch(spec)
    wait_for(lambda: len(group_members(info.pid)) >= 3, "the group to start")
    members = group_members(info.pid)
    runtime.kill(spec.key)
    runtime.kill(spec.key)
    _, reason = sink.exit_for(spec.key)
    assert reason == "killed"
    assert descendants_alive(members) == []
    runtime.kill(spec.key)


def test_kill_escalates_to_sigkill_for_a_process_ignoring_sigterm(tmp_path: Path, runtime, sink) -> None:
    ready = tmp_path / "ready"
    spec = make_spec(
        tmp_path,
        f"sh -c 'trap \"\" TERM; touch {ready}; while true; do sleep 0.05; done' & wait",
    )
    info = runtime.launch(spec)
    wait_for(ready.exists, "the TERM-ignoring child to start")
    members = group_members(info.pid)
    runtime.kill(spec.key, grace_s=0.3)
    _, reason = sink.exit_for(spec.key)
    assert reason == "killed"
    assert descendants_alive(members) == []


def test_stragglers_are_ended_when_the_leader_exits(tmp_path: Path, runtime, sink) -> None:
    # Found by a unique argument: inside the sandbox's pid namespace, `$!` is not the host's pid.
    marker = f"600.{time.monotonic_ns()}"
    started = tmp_path / "bg.started"
    spec = make_spec(tmp_path, f"sleep {marker} & touch {started}; exit 0")
    runtime.launch(spec)
    assert sink.exit_for(spec.key) == (0, "exited")
    assert started.exists()
    stragglers = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", marker]]
    assert descendants_alive(stragglers) == []


def test_env_is_minimal_and_merged(tmp_path: Path, runtime, sink, monkeypatch) -> None:
    monkeypatch.setenv("OPTIO_SERVER_SECRET", "hunter2")
    spec = make_spec(tmp_path, "env", env={"AGENT_TOKEN": "abc"})
    runtime.launch(spec)
    sink.exit_for(spec.key)
    env = dict(line.split("=", 1) for line in sink.lines() if "=" in line)
    assert env["AGENT_TOKEN"] == "abc"
    assert "OPTIO_SERVER_SECRET" not in env
    assert "PATH" in env and "HOME" in env


def test_stdin_comes_from_a_file_and_cwd_is_used(tmp_path: Path, runtime, sink) -> None:
    work = tmp_path / "work"
    work.mkdir()
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("do the thing\n")
    spec = make_spec(tmp_path, "pwd; cat", cwd=work, stdin_path=prompt)
    runtime.launch(spec)
    sink.exit_for(spec.key)
    assert sink.lines() == [str(work), "do the thing"]


def test_launch_errors_are_clear(tmp_path: Path, runtime) -> None:
    spec = make_spec(tmp_path, "true")
    with pytest.raises(RuntimeLaunchError, match="not found"):
        runtime.launch(LaunchSpec("k:1:1", ["no-such-agent-cli"], {}, tmp_path, tmp_path / "l1"))
    with pytest.raises(RuntimeLaunchError, match="does not exist"):
        runtime.launch(LaunchSpec("k:2:1", ["true"], {}, tmp_path / "missing", tmp_path / "l2"))
    with pytest.raises(RuntimeLaunchError, match="empty command"):
        runtime.launch(LaunchSpec("k:3:1", [], {}, tmp_path, tmp_path / "l3"))
    with pytest.raises(RuntimeLaunchError, match="stdin file"):
        runtime.launch(LaunchSpec("k:4:1", ["cat"], {}, tmp_path, tmp_path / "l4", stdin_path=tmp_path / "prompt"))
    runtime.launch(spec)
    with pytest.raises(RuntimeLaunchError, match="already running"):
        runtime.launch(spec)


def test_is_alive_checks_the_start_time(tmp_path: Path, runtime, sink) -> None:
    spec = make_spec(tmp_path, "sleep 600")
    info = runtime.launch(spec)
    assert LocalRuntime.is_alive(info.pid, info.start_time)
    assert not LocalRuntime.is_alive(info.pid, info.start_time - 3600)
    assert read_process_file(spec.log_dir) == info
    runtime.kill(spec.key)
    sink.exit_for(spec.key)
    assert not LocalRuntime.is_alive(info.pid, info.start_time)


def test_sink_failures_are_retried_without_duplicates(tmp_path: Path) -> None:
    sink = RecordingSink(fail_output=2, fail_exit=1)
    rt = LocalRuntime(sink, poll_interval_s=0.02)
    try:
        spec = make_spec(tmp_path, "seq 1 2000; echo oops >&2; exit 4")
        rt.launch(spec)
        assert sink.exit_for(spec.key) == (4, "exited")
    finally:
        rt.shutdown()
    assert sink.lines() == [str(i) for i in range(1, 2001)]
    assert sink.lines("stderr") == ["oops"]
    assert sink.output_attempts == len(sink.batches) + 2
    assert sink.exit_attempts == 2


def _start_and_abandon(
    tmp_path: Path, script: str, wait_lines: list[str], wait_stderr: list[str] | None = None
) -> tuple[LaunchSpec, ProcessInfo, RecordingSink]:
    """Launch with one runtime, let it deliver ``wait_lines`` (and ``wait_stderr``), then shut it down as a
    restart would."""
    sink_a = RecordingSink()
    rt_a = LocalRuntime(sink_a, poll_interval_s=0.05)
    spec = make_spec(tmp_path, script)
    info = rt_a.launch(spec)
    wait_for(lambda: sink_a.lines() == wait_lines, "the first lines")
    if wait_stderr is not None:
        wait_for(lambda: sink_a.lines("stderr") == wait_stderr, "stderr before the restart")
    rt_a.shutdown()
    assert rt_a.active_keys() == []
    assert LocalRuntime.is_alive(info.pid, info.start_time)
    return spec, info, sink_a


def test_adoption_resumes_exactly_where_the_previous_runtime_stopped(tmp_path: Path) -> None:
    go = tmp_path / "go"
    script = (
        'i=1; while [ $i -le 300 ]; do echo "a$i"; i=$((i+1)); done; echo e1 >&2; '
        f"while [ ! -f {go} ]; do sleep 0.05; done; "
        'i=1; while [ $i -le 300 ]; do echo "b$i"; i=$((i+1)); done; echo e2 >&2; exit 7'
    )
    first = [f"a{i}" for i in range(1, 301)]
    # Stderr is its own stream: the runtime may deliver the 300 lines before it has read e1.
    spec, info, sink_a = _start_and_abandon(tmp_path, script, first, ["e1"])
    assert sink_a.exits == []

    sink_b = RecordingSink()
    rt_b = LocalRuntime(sink_b, poll_interval_s=0.05)
    try:
        rt_b.adopt(info, stdout_offset=sink_a.last_offset("stdout"), stderr_offset=sink_a.last_offset("stderr"))
        rt_b.adopt(info, stdout_offset=0, stderr_offset=0)
        assert rt_b.active_keys() == [spec.key]
        go.touch()
        assert sink_b.exit_for(spec.key) == (7, "exited")
    finally:
        rt_b.shutdown()
    assert sink_b.lines() == [f"b{i}" for i in range(1, 301)]
    assert sink_b.lines("stderr") == ["e2"]
    assert sink_b.last_offset("stdout") == (spec.log_dir / "stdout.log").stat().st_size


def test_adopting_a_process_that_ended_unwatched_reads_the_exit_file(tmp_path: Path) -> None:
    go = tmp_path / "go"
    script = f"echo before; while [ ! -f {go} ]; do sleep 0.05; done; echo after; printf tail; exit 2"
    _, info, sink_a = _start_and_abandon(tmp_path, script, ["before"])
    go.touch()
    wait_for(lambda: not LocalRuntime.is_alive(info.pid, info.start_time), "the process to end")

    sink_b, exit_ = _adopt_until_exit(info, sink_a.last_offset("stdout"))
    assert exit_ == (2, "exited")
    assert sink_b.lines() == ["after", "tail"]


def _adopt_until_exit(info: ProcessInfo, stdout_offset: int, before_exit: Callable[[], None] = lambda: None
                      ) -> tuple[RecordingSink, tuple[int | None, str]]:
    """Adopt `info` in a fresh runtime (as a restarted server does), then wait for the exit it reports."""
    sink = RecordingSink()
    rt = LocalRuntime(sink)
    try:
        rt.adopt(info, stdout_offset=stdout_offset, stderr_offset=0)
        before_exit()
        return sink, sink.exit_for(info.key)
    finally:
        rt.shutdown()


def _lose_process_file(spec: LaunchSpec) -> None:
    """The state a server leaves when `kill -9` lands between starting the process and writing its process file."""
    (spec.log_dir / "process.json").unlink()


def test_a_launch_whose_process_file_was_never_written_is_found_and_adopted(tmp_path: Path) -> None:
    go = tmp_path / "go"
    spec, info, sink_a = _start_and_abandon(tmp_path, f"echo up; while [ ! -f {go} ]; do sleep 0.05; done; exit 3",
                                            ["up"])
    _lose_process_file(spec)
    assert LocalRuntime.launch_record(spec.log_dir, "job_run:999:1") is None  # another launch's key
    found = LocalRuntime.launch_record(spec.log_dir, spec.key)
    assert found is not None and found.pid == info.pid and found.key == spec.key
    assert LocalRuntime.is_alive(found.pid, found.start_time)
    assert LocalRuntime.launch_record(spec.log_dir, spec.key) == found  # rebuilt once, then read back

    _, exit_ = _adopt_until_exit(found, sink_a.last_offset("stdout"), go.touch)
    assert exit_ == (3, "exited")


def test_a_launch_that_ended_before_anyone_recorded_it_still_reports_its_exit(tmp_path: Path) -> None:
    go = tmp_path / "go"
    spec, info, sink_a = _start_and_abandon(tmp_path, f"echo up; while [ ! -f {go} ]; do sleep 0.05; done; exit 5",
                                            ["up"])
    _lose_process_file(spec)
    go.touch()
    wait_for(lambda: not LocalRuntime.is_alive(info.pid, info.start_time), "the process to end")
    found = LocalRuntime.launch_record(spec.log_dir, spec.key)
    assert found is not None and found.pid == info.pid
    assert not LocalRuntime.is_alive(found.pid, found.start_time)
    _, exit_ = _adopt_until_exit(found, sink_a.last_offset("stdout"))
    assert exit_ == (5, "exited")


def test_a_launch_caught_before_its_wrapper_recorded_itself_is_stopped_and_never_ran(tmp_path: Path) -> None:
    """Without the wrapper's pid the command has not started: whatever carries the launch's tag is killed."""
    spec, info, _ = _start_and_abandon(tmp_path, "echo up; sleep 600 & sleep 600; wait", ["up"])
    members = group_members(info.pid)
    _lose_process_file(spec)
    (spec.log_dir / "wrapper.pid").unlink()  # as if the wrapper had not written it yet
    assert LocalRuntime.launch_record(spec.log_dir, spec.key) is None
    wait_for(lambda: descendants_alive(members) == [], "the tagged processes to die")


def test_a_launch_that_never_got_to_start_its_process_has_no_record(tmp_path: Path) -> None:
    log_dir = tmp_path / "never"
    log_dir.mkdir()
    assert LocalRuntime.launch_record(log_dir, "job_run:1:1") is None


def test_process_killed_while_unwatched_is_lost(tmp_path: Path) -> None:
    spec, info, _ = _start_and_abandon(tmp_path, "echo up; sleep 600", ["up"])
    os.killpg(info.pid, signal.SIGKILL)
    wait_for(lambda: not LocalRuntime.is_alive(info.pid, info.start_time), "the process to die")

    sink_b = RecordingSink()
    rt_b = LocalRuntime(sink_b)
    try:
        rt_b.adopt(info, stdout_offset=len("up\n"), stderr_offset=0)
        assert sink_b.exit_for(spec.key) == (None, "lost")
    finally:
        rt_b.shutdown()
    assert sink_b.batches == []


def test_adopted_process_can_be_killed(tmp_path: Path) -> None:
    spec, info, sink_a = _start_and_abandon(tmp_path, "echo up; sleep 600 & sleep 600; wait", ["up"])
    members = group_members(info.pid)
    assert len(members) >= 3
    sink_b = RecordingSink()
    rt_b = LocalRuntime(sink_b)
    try:
        rt_b.adopt(info, stdout_offset=sink_a.last_offset("stdout"), stderr_offset=0)
        rt_b.kill(spec.key, grace_s=0.5)
        assert sink_b.exit_for(spec.key) == (None, "killed")
    finally:
        rt_b.shutdown()
    assert descendants_alive(members) == []


def test_kill_info_ends_an_untracked_process(tmp_path: Path) -> None:
    _, info, _ = _start_and_abandon(tmp_path, "echo up; sleep 600 & sleep 600; wait", ["up"])
    members = group_members(info.pid)
    rt_b = LocalRuntime(RecordingSink())
    try:
        rt_b.kill_info(info, grace_s=0.5)
        wait_for(lambda: descendants_alive(members) == [], "the untracked group to end")
    finally:
        rt_b.shutdown()
    assert not LocalRuntime.is_alive(info.pid, info.start_time)


def test_adopted_process_past_its_timeout_is_killed(tmp_path: Path) -> None:
    _, info, sink_a = _start_and_abandon(tmp_path, "echo up; sleep 600", ["up"])
    overdue = ProcessInfo(
        key=info.key,
        pid=info.pid,
        start_time=info.start_time,
        log_dir=info.log_dir,
        started_at=info.started_at,
        timeout_at=time.time() - 1,
    )
    sink_b = RecordingSink()
    rt_b = LocalRuntime(sink_b)
    try:
        rt_b.adopt(overdue, stdout_offset=sink_a.last_offset("stdout"), stderr_offset=0)
        assert sink_b.exit_for(info.key)[1] == "timeout"
    finally:
        rt_b.shutdown()
    assert not LocalRuntime.is_alive(info.pid, info.start_time)


def test_tail_cuts_a_runaway_line_and_keeps_offsets_exact(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    payload = b"x" * (MAX_LINE_BYTES * 2 + 10)
    path.write_bytes(payload)
    tail = FileTail(path)
    pieces: list[str] = []
    while (batch := tail.peek()) is not None:
        pieces.extend(batch.lines)
        tail.commit()
    assert [len(p) for p in pieces] == [MAX_LINE_BYTES, MAX_LINE_BYTES]
    assert tail.offset == 2 * MAX_LINE_BYTES
    batch = tail.peek(final=True)
    tail.close()
    assert batch is not None and batch.lines == ["x" * 10] and batch.end_offset == len(payload)


@settings(max_examples=60, deadline=None)
@given(
    chunks=st.lists(st.binary(max_size=300), max_size=20),
    commits=st.lists(st.booleans(), min_size=1, max_size=50),
    max_lines=st.integers(min_value=1, max_value=7),
)
def test_tail_resumes_without_gap_or_duplicate(chunks: list[bytes], commits: list[bool], max_lines: int) -> None:
    """Whatever the write pattern, failed deliveries and restarts, the delivered lines are the file."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.log"
        path.write_bytes(b"")
        delivered: list[str] = []
        tail = FileTail(path, max_lines=max_lines)
        step = 0

        def pump(final: bool) -> None:
            nonlocal tail, step
            failures = 0
            while (batch := tail.peek(final=final)) is not None:
                step += 1
                if commits[step % len(commits)] or failures >= 3:
                    delivered.extend(batch.lines)
                    tail.commit()
                    failures = 0
                    continue
                failures += 1
                if step % 2 == 0:
                    tail.close()
                    tail = FileTail(path, tail.offset, max_lines=max_lines)

        with path.open("ab") as fh:
            for chunk in chunks:
                fh.write(chunk)
                fh.flush()
                pump(final=False)
        pump(final=True)
        tail.close()
        data = path.read_bytes()
        expected = data.split(b"\n")
        if expected[-1] == b"":
            expected.pop()
        assert delivered == [line.decode("utf-8", errors="replace") for line in expected]
        assert tail.offset == len(data)
