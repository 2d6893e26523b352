"""Agent processes as the control plane sees them: launch, output sink, kill, and recovery on start.

The runtime reports output and exits through `DbSink`; each report is one transaction that appends the
(redacted) lines, moves the stored file offset, and on exit enqueues a reconcile of the run. Because
offsets move in the same transaction as the lines, a restart resumes tailing with no gap and no
duplicate.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from optio.agents import models as vendor_models
from optio.agents.base import AgentConfigError, AgentRequest
from optio.agents.events import SessionEvent, TextEvent, UsageEvent, UsageTotals
from optio.agents.events import to_json as event_to_json
from optio.agents.registry import get_adapter
from optio.config import Settings
from optio.control import agent_tools, output_relay, task_messages
from optio.control.context import ControlContext
from optio.control.ports import RedactorPort
from optio.control.replicas import REPLICA_PREFIX
from optio.domain.backoff import rate_limit_throttle_s
from optio.domain.process_health import NOT_STARTED
from optio.domain.snapshot import ProcessStatus, ProcessView
from optio.observability import metrics
from optio.runtime.base import STDERR_FILE, STDOUT_FILE, LaunchSpec, Mounts, ProcessInfo
from optio.store import leases, logs, queue, repo_tasks, runs
from optio.store import processes as store
from optio.store.db import Database
from optio.store.disk_full import is_disk_full
from optio.store.models import AgentProcess
from optio.store.session import Session
from optio.store.types import utcnow

log = structlog.get_logger("optio.processes")

ACTIVE = store.ACTIVE
OUTPUT_FILES = (STDOUT_FILE, STDERR_FILE)
INBOX_FILE = "inbox"  # the FIFO a live-input run's relay reads messages from
# How long a launch keeps trying to record its outcome while the disk is full.
LAUNCH_RECORD_WAIT_S = 600.0


def process_key(kind: str, run_id: int, attempt: int, purpose: str = "agent") -> str:
    return f"{kind}:{run_id}:{attempt}" if purpose == "agent" else f"{kind}:{run_id}:{attempt}:{purpose}"



class DbSink:
    """The runtime's OutputSink, writing into run logs and the process table."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    def run_redactor(self, session: Session, kind: str, run_id: int, workspace_id: int) -> RedactorPort:
        return runs.redactor_for_run(session, kind, run_id, workspace_id)

    def on_output(self, key: str, stream: str, lines: list[str], offset: int) -> None:
        """Store the lines and, for each line the adapter understands, Optio's own events (stream "event").

        Lines, events and the new file offset share one transaction; usage events move the run's token
        and cost counters in it too (imputing a cost from the price table when the vendor gave none).
        """
        now = utcnow()
        with self.db.write() as session:
            proc = store.by_key(session, key)
            if proc is None:
                return
            redact = self.run_redactor(session, proc.run_kind, proc.run_id, proc.workspace_id).redact
            adapter = _adapter(proc.agent_type)
            entries: list[tuple[str, str]] = []
            plain: list[int] = []  # where the output lines are in `entries`: redacted together below
            totals = UsageTotals()
            session_id: str | None = None
            model_name: str | None = None
            model_known = False
            # A text the vendor streams in chunks (one line each) is stored as one event per batch.
            chunk_at: int | None = None
            chunk_text = ""
            for relayed in lines:
                # Behind the output relay both streams arrive on stdout, tagged, in the order they were
                # printed; each line is stored under its own stream, in that order.
                line_stream, line = output_relay.split(relayed, stream)
                if line_stream == "delivered":
                    task_messages.delivered(session, proc, line, now)
                    continue
                # Every adapter reads one JSON object per line (agents.common, agents.script): a line with no
                # "{" carries no event, and most lines of a long log are skipped without calling the parser.
                events = _parse(adapter, line) if line_stream == "stdout" and "{" in line else []
                # A vendor line the adapter understood is kept as "raw"; readers get its events instead.
                plain.append(len(entries))
                entries.append(("raw" if events else line_stream, line))
                chunked = bool(events) and _continues_text(adapter, line)
                if not chunked:
                    chunk_at = None
                for event in events:
                    if isinstance(event, UsageEvent):
                        if not model_known:
                            config = store.agent_config(session, proc.run_kind, proc.run_id)
                            model_name = vendor_models.for_vendor(config, proc.agent_type).get("model")
                            model_known = True
                        event = totals.add(event, model=model_name)
                    elif isinstance(event, SessionEvent):
                        session_id = event.session_id
                    elif chunked and isinstance(event, TextEvent):
                        chunk_text = chunk_text + event.text if chunk_at is not None else event.text
                        merged = ("event", redact(json.dumps(event_to_json(TextEvent(text=chunk_text)))))
                        if chunk_at is not None:
                            entries[chunk_at] = merged
                            continue
                        chunk_at = len(entries)
                    entries.append(("event", redact(json.dumps(event_to_json(event)))))
            for at, text in zip(plain, redact_all(redact, [entries[at][1] for at in plain]), strict=True):
                entries[at] = (entries[at][0], text)
            metrics.LOG_LINES.inc(len(lines))
            kept_bytes, dropped = self._within_cap(session, proc, entries)
            logs.append(session, workspace_id=proc.workspace_id, kind=proc.run_kind, run_id=proc.run_id,
                        attempt=proc.attempt, entries=entries, now=now)
            column = "stdout_offset" if stream == "stdout" else "stderr_offset"
            store.update_process(session, proc.id, {column: offset, "last_output_at": now})
            store.add_run_output(
                session, proc.run_kind, proc.run_id, now=now, log_bytes=kept_bytes, dropped_bytes=dropped,
                cost_usd=totals.cost_usd, input_tokens=totals.input_tokens, output_tokens=totals.output_tokens,
                cache_tokens=totals.cache_read_tokens + totals.cache_write_tokens, cost_imputed=totals.cost_imputed,
                session_id=session_id,
            )
            if totals.cost_usd:
                # Spending is what a cost budget watches: look at the run now, not at its next health check.
                queue.enqueue(session, proc.run_kind, proc.run_id, proc.workspace_id, reason="cost reported")

    def _within_cap(self, session: Session, proc: AgentProcess, entries: list[tuple[str, str]]) -> tuple[int, int]:
        """Trim `entries` (in place) to the run's log size cap; the run's byte counters to write with them.

        The lines past the cap are still read (the file offset moves on, usage still counts), only not
        stored, so a run that prints without end still finishes normally. One marker line says where.
        """
        cap = self.settings.max_run_log_bytes
        stored, dropped_before = store.log_counters(session, proc.run_kind, proc.run_id)
        kept, kept_bytes, dropped = logs.within_cap(entries, stored_bytes=stored, cap=cap,
                                                    dropping=dropped_before > 0)
        if dropped and not dropped_before:
            kept.append(logs.cap_marker(cap))
            log.warning("run_log_capped", key=proc.key, cap=cap)
        entries[:] = kept
        return kept_bytes, dropped

    def on_exit(self, key: str, exit_code: int | None, reason: str) -> None:
        now = utcnow()
        with self.db.write() as session:
            proc = store.by_key(session, key)
            if proc is None or proc.status in store.ENDED_STATES:
                return
            # The runtime calls this only after every line was stored (redacted) through on_output: the raw
            # files would only keep secrets on disk in plaintext, and the run's end must not wait for that.
            for name in (*OUTPUT_FILES, INBOX_FILE):
                (Path(proc.log_dir) / name).unlink(missing_ok=True)
            status = "gone" if reason == "lost" else "exited"
            values: dict[str, Any] = {"status": status, "exit_code": exit_code, "exit_reason": reason,
                                      "finished_at": now}
            if reason == "exited" and exit_code not in (0, None):
                failure = classify_exit(session, proc, exit_code)
                if failure is not None:
                    values.update(failure_kind=failure.kind, retry_after_s=failure.retry_after_s,
                                  error=self.run_redactor(session, proc.run_kind, proc.run_id,
                                                              proc.workspace_id).redact(failure.message))
                    if failure.kind == "rate_limited" and proc.run_kind == "repo_task":
                        throttle_repo(session, proc.run_id, now, failure.retry_after_s)
            store.update_process(session, proc.id, values)
            queue.enqueue(session, proc.run_kind, proc.run_id, proc.workspace_id, reason=f"process {reason}")
            if proc.run_kind == "repo_task" and proc.purpose == "agent":
                # The agent's end frees its repo slot (`repo_tasks.holds_slot`): the next in line may start
                # while this task pushes its branch and opens its pull request.
                repo_tasks.wake_queued_for(session, proc.run_id, self.settings.max_concurrent_per_repo, now)
            classification = ("success" if exit_code == 0 else values.get("failure_kind") or "failed") \
                if reason == "exited" else reason
            metrics.AGENT_EXITS.labels(proc.run_kind, str(classification)).inc()
        log.info("agent_exit", key=key, exit_code=exit_code, reason=reason)


def redact_all(redact: Callable[[str], str], texts: list[str]) -> list[str]:
    """Each text redacted, as `redact` would one by one, with one pattern search for a batch with no secret.

    Every pattern is local to the text it matches (no anchors; a line's end acts like the newline joining
    it to the next), so a secret in any one line is also found in the joined batch: if the batch comes back
    unchanged, so would every line.
    """
    if not texts:
        return texts
    joined = "\n".join(texts)
    if redact(joined) == joined:
        return texts
    return [redact(text) for text in texts]


def throttle_repo(session: Session, task_id: int, now: datetime, retry_after_s: float | None) -> None:
    """The vendor said slow down: the repo runs one agent at a time for a while (see the repo snapshot)."""
    until = now + timedelta(seconds=rate_limit_throttle_s(retry_after_s))
    store.throttle_repo_of_task(session, task_id, until)


CLASSIFY_STDERR_LINES = 40
CLASSIFY_STDOUT_LINES = 300


def classify_exit(session: Session, proc: AgentProcess, exit_code: int) -> Any | None:
    """Ask the agent's adapter why this attempt failed, from its last stderr lines and stdout events."""
    adapter = _adapter(proc.agent_type)
    classify = getattr(adapter, "classify_failure", None)
    if classify is None:
        return None

    def tail(streams: tuple[str, ...], limit: int) -> list[str]:
        return store.tail_lines(session, proc.run_kind, proc.run_id, proc.attempt, streams, limit)

    events: list[Any] = []
    for line in tail(("stdout", "raw"), CLASSIFY_STDOUT_LINES):
        events.extend(_parse(adapter, line))
    secret = store.agent_config(session, proc.run_kind, proc.run_id).get("api_key_secret")
    kwargs = {"secret_name": secret} if secret else {}
    try:
        return classify(exit_code, "\n".join(tail(("stderr",), CLASSIFY_STDERR_LINES)), events, **kwargs)
    except Exception:
        log.exception("classify_failed", key=proc.key)
        return None


def _adapter(agent_type: str) -> Any | None:
    try:
        return get_adapter(agent_type)
    except AgentConfigError:
        return None


def _continues_text(adapter: Any | None, line: str) -> bool:
    """Whether the adapter says this line's text is a chunk of a message still being streamed."""
    check = getattr(adapter, "is_text_chunk", None)
    try:
        return bool(check(line)) if check is not None else False
    except Exception:
        return False


def _parse(adapter: Any | None, line: str) -> list[Any]:
    if adapter is None:
        return []
    try:
        return list(adapter.parse_line(line))
    except Exception:  # a parser must never break log ingestion
        return []


@dataclass(frozen=True)
class LaunchRequest:
    kind: str
    run_id: int
    workspace_id: int
    attempt: int
    agent_type: str
    agent_config: Mapping[str, Any]
    prompt: str
    cwd: Path
    env: Mapping[str, str]
    timeout_s: float | None
    purpose: str = "agent"
    resume_session_id: str | None = None
    # Prepares the working directory (e.g. checks out the PR head); its failure is a failed launch.
    prepare: Callable[[], None] | None = None
    # What the sandboxed process sees of the host; None = the usual agent layout (cwd read-write).
    mounts: Mounts | None = None
    # The repo whose MCP servers and skills the run gets besides its workspace's (None: a job run).
    repo_id: int | None = None
    # Start the agent so a person's messages reach it while it runs, where its CLI can take them.
    live_input: bool = False


def run_mounts(req: LaunchRequest, *, home: Path, files: list[Path], shared: tuple[Path, ...] = ()) -> Mounts:
    """What a run's sandbox shows: its cwd (or what the request says), its HOME, and the files Optio wrote for it.

    The prompt and CLI config files live in the run's log dir, which the sandbox otherwise hides; each is
    shown read-only on its own. A file under a writable mount (e.g. a CLI login in HOME) stays writable.
    ``shared`` are the caches a CLI keeps between runs (see ``CommandSpec.shared_dirs``), writable.
    """
    base = req.mounts if req.mounts is not None else Mounts(writable=(req.cwd,))
    writable = (*base.writable, home, *shared)
    shown = tuple(f for f in files if f.exists() and not any(f == w or w in f.parents for w in writable))
    return Mounts(writable=writable, readonly=(*base.readonly, *shown))


def home_env(home: Path) -> dict[str, str]:
    """Each run gets its own HOME: the agent never reads the operator's dotfiles or credentials, and a vendor
    CLI's session store survives between attempts of the same run (native resume). Adapters see it too,
    so a CLI that reads its settings only from HOME gets them there."""
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
    }


def share_dirs(cache_root: Path, home: Path, shared_dirs: Mapping[str, str]) -> tuple[Path, ...]:
    """Links each ``HOME``-relative dir a CLI asks to keep between runs to ``cache_root/<name>``.

    What a CLI unpacks on its first start (Copilot: about 235 MB) is then unpacked once, not once per
    run. The link keeps the host path, which the sandbox shows at the same place.
    """
    shared: list[Path] = []
    for name, relative in shared_dirs.items():
        target = cache_root / Path(name).name
        target.mkdir(parents=True, exist_ok=True, mode=0o700)
        rel = Path(relative)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            continue  # only inside the run's own HOME
        link = own_dir(home, rel.parent) / rel.name
        if link.is_symlink() and Path(os.readlink(link)) == target:
            shared.append(target)
            continue
        if link.exists() or link.is_symlink():
            remove(link)  # e.g. unpacked before the cache was shared; the shared copy replaces it
        link.symlink_to(target, target_is_directory=True)
        shared.append(target)
    return tuple(shared)


def own_dir(home: Path, relative: Path) -> Path:
    """``home/relative`` as real directories: a link the agent left on the way is removed, not followed."""
    current = home
    for part in relative.parts:
        if part in ("", ".", ".."):
            raise ValueError(f"not a plain path inside HOME: {relative}")
        current = current / part
        if current.is_symlink() or (current.exists() and not current.is_dir()):
            remove(current)
        if not current.exists():
            current.mkdir(mode=0o700)
    return current


def remove(path: Path) -> None:
    """Removes a file, link or directory tree without following links."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def launch(ctx: ControlContext, req: LaunchRequest) -> None:
    """Record the process, start it, record its pid. Failures become a process row the decision sees."""
    key = process_key(req.kind, req.run_id, req.attempt, req.purpose)
    run_dir = ctx.run_dir(req.kind, req.run_id)
    log_dir = run_dir / f"attempt-{req.attempt}" if req.purpose == "agent" else run_dir / f"{req.purpose}-{req.attempt}"
    log_dir.mkdir(parents=True, exist_ok=True)
    with ctx.db.write() as session:
        if store.by_key(session, key) is not None:
            return  # this step was launched already (e.g. a replayed decision); never run an agent twice
        store.add(session, workspace_id=req.workspace_id, key=key, kind=req.kind, run_id=req.run_id,
                  attempt=req.attempt, purpose=req.purpose, agent_type=req.agent_type, log_dir=str(log_dir),
                  owner=ctx.replica_id)
    error: str | None = None
    failure_kind: str | None = None
    info: ProcessInfo | None = None
    try:
        if req.prepare is not None:
            req.prepare()
        prompt_file = log_dir / "prompt.md"
        prompt_file.write_text(req.prompt, encoding="utf-8")
        req.cwd.mkdir(parents=True, exist_ok=True)
        adapter = get_adapter(req.agent_type)
        home = ctx.data_dir / "homes" / f"{req.kind}-{req.run_id}"
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        run_env = home_env(home) | dict(req.env)
        tools = agent_tools.RunTools()
        if req.agent_type != "script":
            tools = agent_tools.for_run(ctx, workspace_id=req.workspace_id, repo_id=req.repo_id, kind=req.kind,
                                        run_id=req.run_id, checkout=req.cwd if req.repo_id is not None else None)
        config = vendor_models.for_vendor(req.agent_config, req.agent_type)  # the vendor's own options win
        spec = adapter.build_command(
            AgentRequest(
                prompt=req.prompt, prompt_file=prompt_file, workdir=req.cwd, config=config,
                env=run_env, resume_session_id=req.resume_session_id,
                model=config.get("model"), max_turns=config.get("max_turns"),
                base_url=config.get("base_url"), mcp_servers=tools.mcp_servers, skills=tools.skills,
                live_input=req.live_input,
            )
        )
        files = [Path(path) for path in (getattr(spec, "files", None) or {})]
        for path, content in (getattr(spec, "files", None) or {}).items():
            target = Path(path)
            if target.parent == home or home in target.parents:
                # The agent could write in HOME during an earlier attempt: nothing it planted there (a link to
                # a file of the host) may redirect what the server writes now.
                target = own_dir(home, target.parent.relative_to(home)) / target.name
                if target.is_symlink() or (target.exists() and not target.is_file()):
                    remove(target)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(content)
        inbox = output_relay.make_inbox(log_dir / INBOX_FILE) if getattr(spec, "live_input", False) else None
        if inbox is not None:
            files.append(inbox)
        env = home_env(home) | dict(spec.env)
        # Per workspace: a run can write what later runs execute there, so it is shared only within one.
        cache_root = ctx.data_dir / "cache" / "cli" / f"workspace-{req.workspace_id}"
        shared = share_dirs(cache_root, home, getattr(spec, "shared_dirs", None) or {})
        if req.agent_type == "claude-code":
            env.setdefault("IS_SANDBOX", "1")  # the worktree is the sandbox; Claude Code refuses root otherwise
        env.setdefault("OPTIO_RUN_ID", str(req.run_id))
        env.setdefault("OPTIO_ATTEMPT", str(req.attempt))
        # Checked here, since behind the relay a missing command would only be an exit 127.
        output_relay.check_command(key, spec.argv, env, req.cwd)
        info = ctx.runtime.launch(
            LaunchSpec(key=key, argv=output_relay.wrap(spec.argv, inbox=inbox), env=env, cwd=req.cwd,
                       log_dir=log_dir, stdin_path=spec.stdin_path, timeout_s=req.timeout_s,
                       mounts=run_mounts(req, home=home, files=[prompt_file, *files], shared=shared))
        )
    except AgentConfigError as exc:  # a bad config or missing secret will not fix itself: fail fast
        error = str(exc)
        failure_kind = "config"
    except Exception as exc:  # any failure to start is reported to the decision, never raised into a worker
        error = f"{type(exc).__name__}: {exc}"
    # Unwritten, the row would say "starting" for as long as this server lives: on a full disk, wait for space.
    deadline = time.monotonic() + LAUNCH_RECORD_WAIT_S
    while True:
        try:
            _record_launch(ctx, req, key, info, error, failure_kind)
            return
        except Exception as exc:
            if not is_disk_full(exc) or time.monotonic() > deadline:
                raise
            log.warning("launch_record_waits_for_disk", key=key)
            time.sleep(1.0)


def _record_launch(ctx: ControlContext, req: LaunchRequest, key: str, info: ProcessInfo | None, error: str | None,
                   failure_kind: str | None) -> None:
    with ctx.db.write() as session:
        if info is not None:
            store.mark_alive(session, key, pid=info.pid, start_time=info.start_time, timeout_at=info.timeout_at)
        else:
            store.update_by_key(session, key, {
                "status": "exited", "exit_reason": "spawn_failed", "failure_kind": failure_kind,
                "error": ctx.run_redactor(session, req.kind, req.run_id, req.workspace_id).redact(error or ""),
                "finished_at": utcnow()})
            queue.enqueue(session, req.kind, req.run_id, req.workspace_id, reason="spawn failed")
    if info is None:
        log.warning("agent_spawn_failed", key=key, error=error)


def latest_process(session: Session, kind: str, run_id: int, purpose: str = "agent") -> AgentProcess | None:
    return store.latest(session, kind, run_id, purpose)


def process_view(ctx: ControlContext, proc: AgentProcess | None) -> ProcessView | None:
    """The decision's view of a process, double-checking liveness of ones this server does not watch."""
    if proc is None:
        return None
    status = ProcessStatus(proc.status)
    exit_code, exit_reason = proc.exit_code, proc.exit_reason
    runtime = ctx.runtime
    unwatched = status == ProcessStatus.ALIVE and proc.key not in runtime.active_keys()
    if unwatched and proc.owner is not None and proc.owner != ctx.replica_id and proc.owner in live_replicas(ctx):
        unwatched = False  # another live replica watches it and reports its exit
    if unwatched and (proc.pid is None or not runtime.is_alive(proc.pid, proc.start_time or 0.0)):
        # Nobody watches it and it is gone. Its exit file (written by the runtime's wrapper) still tells an
        # ordinary exit apart from a vanished process.
        recorded = runtime.exit_status(_info(proc))
        if recorded is not None:
            status, exit_code, exit_reason = ProcessStatus.EXITED, recorded, "exited"
        else:
            status = ProcessStatus.GONE
        log.warning("unwatched_process_ended", key=proc.key, pid=proc.pid, exit_code=recorded)
    return ProcessView(
        attempt=proc.attempt, status=status, exit_code=exit_code, exit_reason=exit_reason,
        started_at=proc.started_at, last_output_at=proc.last_output_at, error=proc.error,
        failure_kind=proc.failure_kind, retry_after_s=proc.retry_after_s,
    )


def kill_run_processes(ctx: ControlContext, kind: str, run_id: int) -> None:
    with ctx.db.read() as session:
        procs = store.active_of_run(session, kind, run_id)
    for proc in procs:
        if proc.key in ctx.runtime.active_keys():
            ctx.runtime.kill(proc.key)
        elif proc.pid is not None:
            ctx.runtime.kill_info(_info(proc))


def _info(proc: AgentProcess) -> ProcessInfo:
    return ProcessInfo(key=proc.key, pid=proc.pid or 0, start_time=proc.start_time or 0.0,
                       log_dir=Path(proc.log_dir), started_at=proc.started_at.timestamp(),
                       timeout_at=proc.timeout_at)


def live_keys(ctx: ControlContext) -> set[str]:
    """Keys of the processes the table still counts as running (a runtime may clean up everything else)."""
    with ctx.db.read() as session:
        return {proc.key for proc in store.all_active(session)}


def _launched(ctx: ControlContext, proc: AgentProcess) -> ProcessInfo | None:
    """What the runtime recorded of a launch the database has no pid for (a runtime that records none: None)."""
    launch_record = getattr(ctx.runtime, "launch_record", None)
    if launch_record is None:
        return None
    info = launch_record(Path(proc.log_dir), proc.key)
    return info if isinstance(info, ProcessInfo) and info.key == proc.key else None


def live_replicas(ctx: ControlContext) -> set[str]:
    """The replicas alive now (this one always among them; on SQLite, which has one server, only this one)."""
    if ctx.db.dialect == "sqlite":
        return {ctx.replica_id}
    with ctx.db.read() as session:
        owners = leases.live_owners(session, REPLICA_PREFIX, now=utcnow())
    return {owner for owner in owners} | {ctx.replica_id}


def recover(ctx: ControlContext) -> int:
    """On start: re-adopt every process a previous server (or a replica that died) left running."""
    return adopt_orphans(ctx, live_replicas(ctx))


def adopt_orphans(ctx: ControlContext, live: set[str]) -> int:
    """Re-adopt every process whose watcher is gone (no owner, or a replica not in `live`), or learn it is gone.

    Each is taken over with a compare-and-swap of its owner, so of several replicas looking at once exactly
    one adopts it. A process of a run that already ended is killed instead: its work is no longer wanted.
    """
    live = live | {ctx.replica_id}
    with ctx.db.read() as session:
        procs = [p for p in store.all_active(session) if p.owner not in live]
        finished: set[str] = set()
        for proc in procs:
            run = runs.get_run(session, proc.run_kind, proc.run_id, proc.workspace_id)
            handler = ctx.handlers.get(proc.run_kind)
            if run is None or (handler is not None and run.state in handler.terminal):
                finished.add(proc.key)
    adopted = 0
    for proc in procs:
        with ctx.db.write() as session:
            if not store.take_over(session, proc.id, previous=proc.owner, owner=ctx.replica_id):
                continue  # another replica took it first
        if proc.owner is not None:
            log.info("process_taken_over", key=proc.key, previous=proc.owner, replica=ctx.replica_id)
        if proc.pid is None and (launched := _launched(ctx, proc)) is not None:
            # It started, and its server died before recording that: adopt it rather than run the attempt again.
            with ctx.db.write() as session:
                store.mark_alive(session, proc.key, pid=launched.pid, start_time=launched.start_time,
                                 timeout_at=launched.timeout_at)
            if proc.key in finished:
                ctx.runtime.kill_info(launched)
            ctx.runtime.adopt(launched, stdout_offset=0, stderr_offset=0)
            adopted += 1
            continue
        if proc.pid is None:
            with ctx.db.write() as session:
                store.update_process(session, proc.id, {"status": "gone", "exit_reason": NOT_STARTED,
                                                        "finished_at": utcnow(),
                                                        "error": "server stopped before the process started"})
                queue.enqueue(session, proc.run_kind, proc.run_id, proc.workspace_id, reason="recovery")
            continue
        if proc.key in finished:
            ctx.runtime.kill_info(_info(proc))
        ctx.runtime.adopt(_info(proc), stdout_offset=proc.stdout_offset, stderr_offset=proc.stderr_offset)
        adopted += 1
    if adopted:
        log.info("adopted_processes", count=adopted)
    return adopted
