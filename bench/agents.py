"""Persistent agents at scale: 1,000 idle agents cost no process, and how fast a message starts a turn.

A real `optio serve` subprocess (auth and the sandbox as configured by default). The script creates N script
agents over the API, checks that every one is idle and that the server has no child process at all (an idle
agent is a row, not a process), then sends messages one at a time to an on-demand and to a sticky agent and
measures message -> turn start: from just before the POST of the message to the moment the turn's own process
prints the clock (`date +%s.%N`, read back from its workspace). The baseline, measured in the same run on the
same machine, is a bare spawn of the same command with `subprocess` (Popen -> the command's clock), so the
ratios say what Optio's queue, CAS write, turn bookkeeping and sandbox add to starting a process.

usage: .venv/bin/python bench/agents.py [N_AGENTS] [SAMPLES]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.optio_server import OptioServer  # noqa: E402

CLOCK = "date +%s.%N"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def baseline(samples: int) -> list[float]:
    """Popen of `sh -c 'date +%s.%N'` -> the clock it prints, in seconds."""
    out = []
    for _ in range(samples):
        before = time.time()
        printed = subprocess.run(["/bin/sh", "-c", CLOCK], capture_output=True, text=True, check=True).stdout
        out.append(float(printed) - before)
    return out


def create_agents(server: OptioServer, n: int) -> float:
    def create(i: int) -> None:
        server.api("POST", "/api/agents", json={"slug": f"idle-{i:04d}", "agent_config": {"command": "true"}}
                   ).raise_for_status()

    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(n)))
    return time.perf_counter() - started


def server_children(server: OptioServer) -> list[psutil.Process]:
    assert server.proc is not None
    return psutil.Process(server.proc.pid).children(recursive=True)


def show(server: OptioServer, slug: str) -> dict[str, Any]:
    return dict(server.api("GET", f"/api/agents/{slug}").json())


def turn_latencies(server: OptioServer, slug: str, lifecycle: str, samples: int) -> list[float]:
    server.api("POST", "/api/agents", json={"slug": slug, "lifecycle": lifecycle, "idle_timeout_s": 3600,
                                            "agent_config": {"command": f"{CLOCK} > started.txt"}}
               ).raise_for_status()
    workspace = server.data_dir / "agents" / str(show(server, slug)["id"]) / "workspace"
    out = []
    for k in range(1, samples + 1):
        sent = time.time()
        server.api("POST", f"/api/agents/{slug}/messages", json={"body": f"tick {k}"}).raise_for_status()
        deadline = time.monotonic() + 60
        while True:
            row = show(server, slug)
            if row["turn_count"] >= k and row["state"] == "idle":
                break
            if time.monotonic() > deadline or row["state"] in ("failed", "paused"):
                raise RuntimeError(f"{slug} turn {k} did not finish: {row}")
            time.sleep(0.01)
        out.append(float((workspace / "started.txt").read_text()) - sent)
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    samples = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    with tempfile.TemporaryDirectory() as tmp:
        server = OptioServer(Path(tmp) / "data", env={"OPTIO_LOG_LEVEL": "warning"}).start()
        try:
            created_s = create_agents(server, n)
            rows = server.api("GET", "/api/agents").json()
            idle = sum(1 for r in rows if r["state"] == "idle")
            children = server_children(server)
            print(f"agents created:                      {n:8d} in {created_s:6.2f} s ({n / created_s:,.0f}/s)")
            print(f"idle agents:                         {idle:8d}")
            print(f"processes under the server (idle):   {len(children):8d}")
            if idle != n or children:
                raise SystemExit(f"expected {n} idle agents and no process: {idle} idle, "
                                 f"{[p.cmdline() for p in children]}")
            base = baseline(samples)
            on_demand = turn_latencies(server, "bench-on-demand", "on-demand", samples)
            sticky = turn_latencies(server, "bench-sticky", "sticky", samples)
        finally:
            server.stop()
    b50, b99 = percentile(base, 50) * 1000, percentile(base, 99) * 1000
    print(f"baseline bare spawn p50 / p99:       {b50:8.1f} / {b99:8.1f} ms")
    for name, values in (("on-demand", on_demand), ("sticky", sticky)):
        p50, p99 = percentile(values, 50) * 1000, percentile(values, 99) * 1000
        print(f"{name:9s} message -> turn start p50 / p99: {p50:8.1f} / {p99:8.1f} ms "
              f"(mean {statistics.fmean(values) * 1000:.1f} ms, {len(values)} turns)")
        print(f"ratio {name}/baseline p50 / p99:   {p50 / b50:8.1f} / {p99 / b99:8.1f}")


if __name__ == "__main__":
    main()
