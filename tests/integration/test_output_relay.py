"""The output relay on real processes: order, exit status, kills, stragglers, long lines."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from optio.control import output_relay
from optio.runtime.base import RuntimeLaunchError
from optio.runtime.tail import MAX_LINE_BYTES


def relayed(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(output_relay.wrap(argv), capture_output=True, timeout=30, **kwargs)  # type: ignore[call-overload]


def records(stdout: bytes) -> list[tuple[str, str]]:
    return [output_relay.split(line, "untagged") for line in stdout.decode().split("\n")[:-1]]


def test_both_streams_come_out_tagged_in_order_with_the_exit_status() -> None:
    res = relayed(["/bin/sh", "-c", "echo a; sleep 0.02; echo b >&2; sleep 0.02; echo c; printf d >&2; exit 4"])
    assert res.returncode == 4 and res.stderr == b""
    assert records(res.stdout) == [("stdout", "a"), ("stderr", "b"), ("stdout", "c"), ("stderr", "d")]


def test_a_line_without_a_tag_keeps_the_stream_it_came_on() -> None:
    assert output_relay.split("plain", "stderr") == ("stderr", "plain")
    assert output_relay.split("\x1exoops", "stdout") == ("stdout", "\x1exoops")


def test_long_lines_are_cut_below_the_runtime_line_limit() -> None:
    res = relayed(["/bin/sh", "-c", f"head -c {MAX_LINE_BYTES * 2} /dev/zero | tr '\\0' x; echo; echo after"])
    lines = res.stdout.split(b"\n")[:-1]
    assert all(len(line) <= MAX_LINE_BYTES for line in lines)
    assert sum(len(line) - 2 for line in lines[:-1]) == MAX_LINE_BYTES * 2
    assert lines[-1] == b"\x1eoafter"


def test_sigterm_to_the_group_ends_the_agent_and_the_relay_reports_it(tmp_path: Path) -> None:
    out = (tmp_path / "out").open("wb")
    proc = subprocess.Popen(output_relay.wrap(["/bin/sh", "-c", "echo started; exec sleep 60"]), stdout=out,
                            start_new_session=True)
    deadline = time.monotonic() + 10
    while b"started" not in (tmp_path / "out").read_bytes():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(10) == 128 + signal.SIGTERM
    assert records((tmp_path / "out").read_bytes()) == [("stdout", "started")]


def test_a_straggler_holding_the_pipes_does_not_keep_the_relay_alive() -> None:
    started = time.monotonic()
    proc = subprocess.Popen(output_relay.wrap(["/bin/sh", "-c", "sleep 30 & echo done"]), stdout=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=10)
        assert time.monotonic() - started < 10
        assert proc.returncode == 0 and records(out) == [("stdout", "done")]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)


def test_a_missing_command_is_refused_before_launch(tmp_path: Path) -> None:
    with pytest.raises(RuntimeLaunchError, match="not found on PATH"):
        output_relay.check_command("k", ["no-such-agent-cli"], {"PATH": "/usr/bin:/bin"}, tmp_path)
    with pytest.raises(RuntimeLaunchError, match="not an executable"):
        output_relay.check_command("k", ["./nope.sh"], {}, tmp_path)
    output_relay.check_command("k", ["sh", "-c", "true"], {}, tmp_path)
