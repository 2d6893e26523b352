"""Persistent agents: snapshot building and the side effects around the pure agent decision.

A turn opens in the transaction that moves the agent from ``queued`` to ``provisioning``: the oldest pending
messages are drained into the turn row and rendered into its prompt there, so a message belongs to exactly
one open turn. The turn closes in the transaction that moves the agent out of ``provisioning``/``running``:
only a succeeded turn marks its messages processed. Both happen in ``on_transition``, inside the executor's
CAS write, so a crash either leaves the whole change or none of it.

Lifecycle on the local runtime: every turn is one process. ``on-demand`` starts each turn cold (a fresh
workspace directory and HOME, no session resume); ``sticky`` and ``always-on`` keep the workspace directory
(an agent's memory file survives) and HOME, and resume the vendor's session natively, ``sticky`` only while
the previous turn ended within the idle timeout.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime, time
from pathlib import Path
from typing import Any

import structlog

from optio.control import agent_turn_api, processes
from optio.control.context import ControlContext
from optio.control.handlers import Loaded, Outcome
from optio.control.kinds.job import executor_error_policy, run_view
from optio.domain.actions import Action
from optio.domain.agent_messages import Envelope, agent_sender, render_prompt, wake_reason
from optio.domain.reconcile.agent import BUDGET_EXCEEDED, AgentSnapshot, decide_agent
from optio.domain.snapshot import Capacity
from optio.domain.states import TERMINAL, RunKind
from optio.store import admission, notifications
from optio.store import persistent_agents as store
from optio.store.models import PersistentAgent
from optio.store.session import Session

KIND = RunKind.AGENT.value
log = structlog.get_logger("optio.agents")
# A turn drains at most this many messages; the rest wait for the next turn (which follows at once).
MAX_MESSAGES_PER_TURN = 100
# How soon a failed turn is retried (doubling per failure in a row, jittered, capped).
RETRY_BASE_S = 1.0
IN_TURN = ("provisioning", "running")


@dataclass(frozen=True)
class AgentFacts:
    """What launching a turn needs beyond the snapshot."""

    slug: str
    agent_type: str
    agent_config: dict[str, Any]
    lifecycle: str
    secret_names: tuple[str, ...]
    max_turn_s: float | None
    current_turn_id: int | None


AgentLoaded = Loaded[AgentSnapshot, AgentFacts]


def agent_dir(ctx: ControlContext, agent_id: int) -> Path:
    return ctx.data_dir / "agents" / str(agent_id)


def workspace_dir(ctx: ControlContext, agent_id: int) -> Path:
    """The agent's working directory: kept across turns for sticky and always-on agents (its memory)."""
    return agent_dir(ctx, agent_id) / "workspace"


def home_dir(ctx: ControlContext, agent_id: int) -> Path:
    """Where the launcher keeps the agent's HOME (the vendor CLI's session store lives there)."""
    return ctx.data_dir / "homes" / f"{KIND}-{agent_id}"


def turn_env(ctx: ControlContext, workspace_id: int, facts: AgentFacts, agent_id: int, turn_number: int,
             turn_id: int | None) -> dict[str, str]:
    """The environment of one turn's process besides its secrets: who the agent is, which turn this is.

    The one place a turn's environment is built: extend it here (e.g. a per-turn API token).
    """
    return {
        "OPTIO_AGENT_SLUG": facts.slug,
        "OPTIO_AGENT_ID": str(agent_id),
        "OPTIO_AGENT_TURN": str(turn_number),
        "OPTIO_AGENT_TURN_ID": str(turn_id or ""),
        "OPTIO_AGENT_LIFECYCLE": facts.lifecycle,
        "OPTIO_WORKSPACE_ID": str(workspace_id),
    }


def _start_of_day(now: datetime) -> datetime:
    return datetime.combine(now.date(), time.min, tzinfo=now.tzinfo)


class AgentHandler:
    kind = KIND
    terminal = TERMINAL[RunKind.AGENT]

    def __init__(self, turn_token_secret: bytes | None = None) -> None:
        # Signs each turn's OPTIO_AGENT_TOKEN for the inter-agent API; None: turns get no token.
        self.turn_token_secret = turn_token_secret

    def build_snapshot(self, ctx: ControlContext, session: Session, run_id: int, workspace_id: int,
                       now: datetime) -> AgentLoaded | None:
        agent = store.load(session, run_id, workspace_id)
        if agent is None:
            return None
        state = agent.state
        pending = 0
        if state != "archived":
            pending = store.pending_count(session, agent.id, not_in_turn=agent.current_turn_id)
        process = None
        if state == "running":
            process = processes.process_view(ctx, processes.latest_process(session, KIND, agent.id))
        cost_today = 0.0
        if agent.max_cost_usd is not None and state in ("queued", "running"):
            open_turn = store.turn_by_id(session, agent.current_turn_id) if agent.current_turn_id else None
            cost_today = store.cost_since(session, agent.id, _start_of_day(now), open_turn=open_turn,
                                          agent_cost=agent.cost_usd or 0.0)
        capacity = Capacity()
        if state == "queued" and agent.control_intent is None:
            capacity = Capacity(running_global=admission.active_runs(session),
                                max_global=ctx.settings.max_concurrent_runs)
        snap = AgentSnapshot(
            now=now, run=run_view(agent, RunKind.AGENT), pending=pending, process=process,
            consecutive_failures=agent.consecutive_failures, max_consecutive_failures=agent.max_consecutive_failures,
            max_cost_usd=agent.max_cost_usd, cost_today=cost_today, capacity=capacity,
            stall_threshold_s=ctx.settings.stall_threshold_s, retry_base_s=RETRY_BASE_S, lifecycle=agent.lifecycle,
            idle_timeout_s=agent.idle_timeout_s, last_turn_at=agent.last_turn_at, session_id=agent.agent_session_id,
            executor_errors=executor_error_policy(ctx),
        )
        facts = AgentFacts(slug=agent.slug, agent_type=agent.agent_type, agent_config=dict(agent.agent_config or {}),
                           lifecycle=agent.lifecycle, secret_names=tuple(agent.secret_names or ()),
                           max_turn_s=agent.max_turn_s, current_turn_id=agent.current_turn_id)
        return Loaded(workspace_id=workspace_id, snapshot=snap, facts=facts)

    def decide(self, snapshot: Any) -> Action:
        return decide_agent(snapshot)

    def admit(self, ctx: ControlContext, session: Session, loaded: AgentLoaded, to_state: str) -> bool:
        """Opening a turn takes a slot: re-check the global cap inside the transaction that opens it."""
        if not (loaded.run.state == "queued" and to_state == "provisioning"):
            return True
        admission.serialize_starts(session)
        return admission.active_runs(session) < ctx.settings.max_concurrent_runs

    def launch(self, ctx: ControlContext, loaded: AgentLoaded, action: Any, attempt: int) -> None:
        facts = loaded.facts
        agent_id = loaded.run.id
        with ctx.db.read() as session:
            turn = store.turn_by_id(session, facts.current_turn_id) if facts.current_turn_id else None
            prompt = turn.prompt if turn is not None else ""
            resume = turn.resumed_session_id if turn is not None else None
        cwd = workspace_dir(ctx, agent_id)
        cold = facts.lifecycle == "on-demand"

        env = ctx.secret_env(loaded.workspace_id, list(facts.secret_names), run=(KIND, agent_id))
        env.update(turn_env(ctx, loaded.workspace_id, facts, agent_id, attempt, facts.current_turn_id))
        timeout_s = facts.max_turn_s or facts.agent_config.get("timeout_s") or ctx.settings.agent_timeout_s
        mounts = None
        api_env: dict[str, str] = {}
        if self.turn_token_secret and facts.current_turn_id is not None:
            api_env = agent_turn_api.turn_api_env(
                self.turn_token_secret, ctx.settings.api_url, agent_id=agent_id, workspace_id=loaded.workspace_id,
                turn_id=facts.current_turn_id, turn_timeout_s=float(timeout_s))
            env.update(api_env)
            mounts = agent_turn_api.turn_mounts(cwd, ctx.data_dir.resolve())

        def prepare() -> None:
            if cold:  # every turn starts from nothing: no files, no CLI state from the last one
                shutil.rmtree(cwd, ignore_errors=True)
                shutil.rmtree(home_dir(ctx, agent_id), ignore_errors=True)
            cwd.mkdir(parents=True, exist_ok=True)
            if api_env:
                agent_turn_api.write_turn_file(home_dir(ctx, agent_id), api_env)

        if resume and not cold:
            # Vendor CLIs resume natively (the adapter's resume path); a script agent can read it here.
            env["OPTIO_AGENT_RESUME_SESSION"] = resume
        processes.launch(
            ctx,
            processes.LaunchRequest(
                kind=KIND, run_id=agent_id, workspace_id=loaded.workspace_id, attempt=attempt,
                agent_type=facts.agent_type, agent_config=facts.agent_config, prompt=prompt, cwd=cwd, env=env,
                timeout_s=timeout_s, resume_session_id=None if cold else resume, prepare=prepare, mounts=mounts,
            ),
        )

    def apply_special(self, ctx: ControlContext, loaded: AgentLoaded, action: Any, now: datetime) -> Outcome:
        return Outcome("error", f"persistent agents do not support action {action.name!r}")

    def on_transition(self, ctx: ControlContext, session: Session, loaded: AgentLoaded, to_state: str,
                      now: datetime) -> None:
        from_state = loaded.run.state
        agent = store.load(session, loaded.run.id, loaded.workspace_id)
        if agent is None:
            return
        session.refresh(agent)  # the CAS write just changed it behind the ORM's back
        if from_state in IN_TURN and to_state not in IN_TURN and agent.current_turn_id is not None:
            self._close_turn(ctx, session, agent, now)
        if from_state == "queued" and to_state == "provisioning":
            self._open_turn(session, agent, now)
        if to_state == "paused" and agent.paused_reason == BUDGET_EXCEEDED:
            _tell_senders_about_budget(session, agent, now)

    def _open_turn(self, session: Session, agent: PersistentAgent, now: datetime) -> None:
        turn, drained = store.start_turn(session, agent, number=agent.attempts, now=now,
                                         max_messages=MAX_MESSAGES_PER_TURN)
        envelopes = [Envelope(id=m.id, sender=m.sender, type=m.type, body=m.body, created_at=m.created_at)
                     for m in drained]
        prompt = render_prompt(system_prompt=agent.system_prompt, operator_manual=agent.operator_manual,
                               envelopes=envelopes, agent_slug=agent.slug, turn=agent.attempts)
        store.fill_turn(session, turn.id, {"prompt": prompt, "wake_reason": wake_reason([m.sender for m in drained]),
                                           "state": "running", "resumed_session_id": agent.agent_session_id})

    def _close_turn(self, ctx: ControlContext, session: Session, agent: PersistentAgent, now: datetime) -> None:
        turn = store.turn_by_id(session, agent.current_turn_id) if agent.current_turn_id else None
        if turn is None:
            return
        outcome = agent.last_turn_outcome or "interrupted"
        error = None if outcome == "succeeded" else agent.error
        store.close_turn(session, agent.id, turn, outcome=outcome, error=error, now=now)
        log.info("agent_turn_closed", agent=agent.slug, turn=turn.number, outcome=outcome)

    def after_commit(self, ctx: ControlContext, loaded: AgentLoaded, action: Any) -> None:
        return None


def _tell_senders_about_budget(session: Session, agent: PersistentAgent, now: datetime) -> None:
    """The agent stopped for its budget: each agent that is waiting on it hears so in its own inbox.

    People see the agent paused with reason ``budget_exceeded`` (its timeline and notifications).
    """
    ws_slug = store.workspace_slug(session, agent.workspace_id)
    own = agent_sender(ws_slug, agent.slug)
    prefix = f"agent:{ws_slug}/"
    waiting = store.pending_senders(session, agent.id)
    senders = {s for s in waiting if s.startswith(prefix) and s != own}
    for sender in sorted(senders):
        peer = store.find(session, agent.workspace_id, sender[len(prefix):])
        if peer is None or peer.state == "archived":
            continue
        store.insert_message(session, peer, sender="system:budget", type="event", now=now,
                             body=f"agent {agent.slug!r} is paused: its daily budget is exceeded "
                                  f"({agent.error or BUDGET_EXCEEDED}); your message to it waits until it resumes")
    notifications.queue_event(session, workspace_id=agent.workspace_id, event=notifications.BUDGET_EXCEEDED, now=now,
                              payload={"event": notifications.BUDGET_EXCEEDED, "kind": KIND, "id": agent.id,
                                       "slug": agent.slug, "state": "paused", "reason": agent.error or BUDGET_EXCEEDED,
                                       "waiting_senders": waiting, "at": now.isoformat()})

