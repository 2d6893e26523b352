"""Real vendor CLIs, end to end, against the local model server.

The CLIs come from ``scripts/install-vendor-clis.sh`` (``$OPTIO_VENDOR_CLI_BIN``, else
``.cache/vendor-clis/node_modules/.bin``). Vendor model APIs cannot be reached from tests, so each CLI
is pointed at ``tests.support.model_server.ModelServer`` through its base-URL setting: Claude Code
speaks the Anthropic Messages API to it, Codex the OpenAI Responses API, OpenCode OpenAI chat
completions. The scripted model makes each CLI write a file with its own tools; the adapter builds
the command and parses the CLI's real stdout.

Missing CLIs skip these tests locally and fail them when ``CI=true``. With ``OPTIO_RECORD_FIXTURES=1``
the captured stdout is written to ``tests/fixtures/agents/<vendor>/`` for the parser unit tests.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.support.model_server import ModelServer, ToolCall, Turn
from tests.support.sandbox import runtime_sandbox

from optio.agents.base import AgentRequest
from optio.agents.claude_code import ClaudeCodeAgent
from optio.agents.codex import CodexAgent
from optio.agents.copilot import CopilotAgent
from optio.agents.events import (
    AgentEvent,
    ResultEvent,
    SessionEvent,
    TextEvent,
    ThinkingEvent,
    ToolResultEvent,
    ToolUseEvent,
    UsageEvent,
    UsageTotals,
)
from optio.agents.gemini import GeminiAgent
from optio.agents.opencode import OpenCodeAgent
from optio.control.processes import share_dirs
from optio.domain.agent_errors import policy_for
from optio.runtime.base import Mounts

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "agents"
CLI_BIN = Path(os.environ.get("OPTIO_VENDOR_CLI_BIN") or ROOT / ".cache" / "vendor-clis" / "node_modules" / ".bin")
RUN_TIMEOUT_S = 90

pytestmark = pytest.mark.slow


def require_cli(name: str) -> str:
    path = CLI_BIN / name
    if path.exists():
        return str(path)
    message = f"{name} CLI not installed in {CLI_BIN}; run scripts/install-vendor-clis.sh"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str
    events: list[AgentEvent]


def run_cli(
    adapter: Any, request: AgentRequest, home: Path, *, record: str | None = None, writable: tuple[Path, ...] = ()
) -> Run:
    """Builds the command with the adapter and runs it as a real subprocess, then parses stdout."""
    spec = adapter.build_command(request)
    for path, content in spec.files.items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(content)
    env = {
        "PATH": f"{CLI_BIN}:{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        **spec.env,
    }
    argv = list(spec.argv)
    sandbox = runtime_sandbox()
    if sandbox is not None:  # as Optio runs them: in the sandbox, seeing the workspace, HOME and its files
        shown = [request.prompt_file, *(Path(p) for p in spec.files if home not in Path(p).parents)]
        mounts = Mounts(writable=(request.workdir, home, *writable), readonly=tuple(shown))
        argv, env = sandbox.wrap(argv, cwd=request.workdir, env=env, mounts=mounts)
    stdin = open(spec.stdin_path, "rb") if spec.stdin_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.run(
            argv,
            cwd=request.workdir,
            env=env,
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
        )
    finally:
        if spec.stdin_path:
            stdin.close()  # type: ignore[union-attr]
    if record and os.environ.get("OPTIO_RECORD_FIXTURES") == "1":
        target = FIXTURES / adapter.name / f"{record}.ndjson"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(proc.stdout)
    events = [event for line in proc.stdout.splitlines() for event in adapter.parse_line(line)]
    return Run(proc.returncode, proc.stdout, proc.stderr, events)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    return work


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def make_request(workspace: Path, prompt: str, **kwargs: Any) -> AgentRequest:
    prompt_file = workspace.parent / "run" / "prompt.md"
    prompt_file.parent.mkdir(exist_ok=True)
    prompt_file.write_text(prompt)
    return AgentRequest(prompt=prompt, prompt_file=prompt_file, workdir=workspace, **kwargs)


def only(events: list[AgentEvent], cls: type) -> list[Any]:
    return [e for e in events if isinstance(e, cls)]


# -- Claude Code ----------------------------------------------------------------------------------

CLAUDE_MODEL = "claude-sonnet-4-5"


def claude_request(workspace: Path, server: ModelServer, prompt: str, **kwargs: Any) -> AgentRequest:
    config = {"cli": require_cli("claude"), **kwargs.pop("config", {})}
    env = {"ANTHROPIC_API_KEY": "sk-ant-test", "IS_SANDBOX": "1", **kwargs.pop("env", {})}
    return make_request(
        workspace, prompt, config=config, env=env, model=CLAUDE_MODEL, base_url=server.url, max_turns=5, **kwargs
    )


def test_claude_code_writes_a_file_with_its_own_tool_and_reports_session_usage_and_cost(
    workspace: Path, home: Path
) -> None:
    target = workspace / "hello.txt"
    turns = [
        Turn(
            thinking="The user wants hello.txt; the Write tool does that.",
            text="Writing the file now.",
            tool_calls=(ToolCall("Write", {"file_path": str(target), "content": "hello from claude\n"}),),
        ),
        Turn(text="Done: wrote hello.txt."),
    ]
    with ModelServer(turns) as server:
        run = run_cli(ClaudeCodeAgent(), claude_request(workspace, server, "Create hello.txt"), home, record="success")
        model_calls = server.model_requests()

    assert run.exit_code == 0, run.stderr
    assert target.read_text() == "hello from claude\n"
    assert model_calls and model_calls[0].headers.get("x-api-key") == "sk-ant-test"
    assert [e.name for e in only(run.events, ToolUseEvent)] == ["Write"]
    assert only(run.events, ToolResultEvent) and not only(run.events, ToolResultEvent)[0].is_error
    assert only(run.events, ThinkingEvent)
    session = only(run.events, SessionEvent)
    assert session and len(session[0].session_id) == 36
    usage = only(run.events, UsageEvent)
    assert len(usage) == 1
    assert (usage[0].input_tokens, usage[0].output_tokens) == (2400, 160)
    # Claude Code prices the tokens itself: 2400 * $3/M + 160 * $15/M
    assert usage[0].cost_usd == pytest.approx(0.0096)
    totals = UsageTotals()
    totals.add_all(run.events, model=CLAUDE_MODEL)
    assert totals.cost_usd == pytest.approx(0.0096) and not totals.cost_imputed
    assert only(run.events, ResultEvent)[-1].success
    assert ClaudeCodeAgent().classify_failure(run.exit_code, run.stderr, run.events) is None


def test_claude_code_resumes_its_session_natively(workspace: Path, home: Path) -> None:
    turns = [
        Turn(text="First answer."),
        Turn(
            text="Adding the second file.",
            tool_calls=(ToolCall("Write", {"file_path": str(workspace / "second.txt"), "content": "2\n"}),),
        ),
        Turn(text="Second file written."),
    ]
    with ModelServer(turns) as server:
        first = run_cli(ClaudeCodeAgent(), claude_request(workspace, server, "Say something"), home)
        session_id = only(first.events, SessionEvent)[0].session_id
        resumed = run_cli(
            ClaudeCodeAgent(),
            claude_request(workspace, server, "Now write second.txt", resume_session_id=session_id),
            home,
            record="resume",
        )
        resumed_call = server.model_requests()[1].body

    assert first.exit_code == 0 and resumed.exit_code == 0, resumed.stderr
    assert (workspace / "second.txt").read_text() == "2\n"
    # the resumed conversation carries the first exchange: native resume, not a fresh run
    texts = repr(resumed_call["messages"])
    assert "Say something" in texts and "First answer." in texts
    assert only(resumed.events, SessionEvent)[0].session_id == session_id


def test_claude_code_recovers_from_a_brief_429(workspace: Path, home: Path) -> None:
    with ModelServer([Turn(text="Recovered.")]) as server:
        server.fail_next(429, times=2, retry_after=0)
        run = run_cli(ClaudeCodeAgent(), claude_request(workspace, server, "Hi"), home)
        statuses = len(server.model_requests())

    assert statuses == 3
    assert run.exit_code == 0, run.stderr
    assert only(run.events, ResultEvent)[-1].success


def test_claude_code_lasting_429_is_classified_rate_limited_and_retried_later(workspace: Path, home: Path) -> None:
    with ModelServer([Turn(text="never")]) as server:
        server.fail_next(429, times=50, retry_after=0)
        run = run_cli(ClaudeCodeAgent(), claude_request(workspace, server, "Hi"), home, record="rate_limited")

    assert run.exit_code != 0
    error = ClaudeCodeAgent().classify_failure(run.exit_code, run.stderr[-2000:], run.events)
    assert error is not None and error.kind == "rate_limited" and error.retryable
    policy = policy_for(error.kind)
    assert policy.retry and policy.backoff and policy.lower_concurrency


def test_claude_code_invalid_key_fails_fast_naming_the_secret(workspace: Path, home: Path) -> None:
    with ModelServer([Turn(text="never")]) as server:
        server.fail_next(401, times=50)
        request = claude_request(
            workspace, server, "Hi", config={"api_key_secret": "TEAM_ANTHROPIC_KEY"}, env={"TEAM_ANTHROPIC_KEY": "bad"}
        )
        adapter = ClaudeCodeAgent()
        run = run_cli(adapter, request, home, record="auth_failed")

    assert run.exit_code != 0
    error = adapter.classify_failure(run.exit_code, run.stderr, run.events, secret_name=adapter.secret_name(request))
    assert error is not None and error.kind == "auth" and not error.retryable
    assert "TEAM_ANTHROPIC_KEY" in error.message


# -- Codex ----------------------------------------------------------------------------------------

CODEX_MODEL = "gpt-5.5"


def codex_request(workspace: Path, server: ModelServer, prompt: str, **kwargs: Any) -> AgentRequest:
    config = {"cli": require_cli("codex"), **kwargs.pop("config", {})}
    env = {"OPENAI_API_KEY": "sk-openai-test", **kwargs.pop("env", {})}
    return make_request(
        workspace, prompt, config=config, env=env, model=CODEX_MODEL, base_url=server.openai_url, **kwargs
    )


def test_codex_writes_a_file_with_its_shell_tool_and_reports_session_and_usage(workspace: Path, home: Path) -> None:
    turns = [
        Turn(
            thinking="Write the file with a shell command.",
            tool_calls=(ToolCall("exec_command", {"cmd": "printf 'hello from codex\\n' > hello.txt"}),),
        ),
        Turn(text="Done: wrote hello.txt."),
    ]
    with ModelServer(turns) as server:
        run = run_cli(CodexAgent(), codex_request(workspace, server, "Create hello.txt"), home, record="success")
        calls = server.model_requests()

    assert run.exit_code == 0, run.stderr
    assert (workspace / "hello.txt").read_text() == "hello from codex\n"
    assert calls and calls[0].headers.get("authorization") == "Bearer sk-openai-test"
    assert only(run.events, SessionEvent)
    assert [e.name for e in only(run.events, ToolUseEvent)] == ["shell"]
    assert only(run.events, ThinkingEvent)
    usage = only(run.events, UsageEvent)
    assert sum(u.input_tokens for u in usage) == 2400 and sum(u.output_tokens for u in usage) == 160
    # Codex reports no cost; Optio imputes it from the price table and says so
    totals = UsageTotals()
    totals.add_all(run.events, model=CODEX_MODEL)
    assert totals.cost_imputed and totals.cost_usd > 0
    assert CodexAgent().classify_failure(run.exit_code, run.stderr, run.events) is None


def test_codex_lasting_429_is_classified_rate_limited(workspace: Path, home: Path) -> None:
    with ModelServer([Turn(text="never")]) as server:
        server.fail_next(429, times=50, retry_after=0)
        run = run_cli(CodexAgent(), codex_request(workspace, server, "Hi"), home, record="rate_limited")

    error = CodexAgent().classify_failure(run.exit_code, run.stderr[-2000:], run.events)
    assert error is not None and error.kind == "rate_limited" and error.retryable


def test_codex_invalid_key_is_classified_auth_naming_the_secret(workspace: Path, home: Path) -> None:
    with ModelServer([Turn(text="never")]) as server:
        server.fail_next(401, times=50)
        run = run_cli(CodexAgent(), codex_request(workspace, server, "Hi"), home, record="auth_failed")

    error = CodexAgent().classify_failure(run.exit_code, run.stderr[-2000:], run.events, secret_name="OPENAI_API_KEY")
    assert error is not None and error.kind == "auth" and not error.retryable
    assert "OPENAI_API_KEY" in error.message


# -- OpenCode -------------------------------------------------------------------------------------

OPENCODE_MODEL = "gpt-4.1"


def opencode_request(workspace: Path, server: ModelServer, prompt: str, **kwargs: Any) -> AgentRequest:
    config = {"cli": require_cli("opencode"), **kwargs.pop("config", {})}
    env = {"OPENAI_API_KEY": "sk-opencode-test", **kwargs.pop("env", {})}
    return make_request(
        workspace, prompt, config=config, env=env, model=OPENCODE_MODEL, base_url=server.openai_url, **kwargs
    )


def test_opencode_writes_a_file_with_its_own_tool_and_reports_session_and_usage(workspace: Path, home: Path) -> None:
    target = workspace / "hello.txt"
    turns = [
        Turn(
            text="Writing.",
            tool_calls=(ToolCall("write", {"filePath": str(target), "content": "hello from opencode\n"}),),
        ),
        Turn(text="Done: wrote hello.txt."),
    ]
    with ModelServer(turns) as server:
        run = run_cli(OpenCodeAgent(), opencode_request(workspace, server, "Create hello.txt"), home, record="success")
        tool_calls = [r for r in server.model_requests() if r.body.get("tools")]

    assert run.exit_code == 0, run.stderr
    assert target.read_text() == "hello from opencode\n"
    assert tool_calls and tool_calls[0].headers.get("authorization") == "Bearer sk-opencode-test"
    assert only(run.events, SessionEvent)[0].session_id.startswith("ses_")
    assert [e.name for e in only(run.events, ToolUseEvent)] == ["write"]
    totals = UsageTotals()
    totals.add_all(run.events, model=OPENCODE_MODEL)
    assert (totals.input_tokens, totals.output_tokens) == (2400, 160)
    assert totals.cost_imputed and totals.cost_usd == pytest.approx((2400 * 2.0 + 160 * 8.0) / 1e6)
    assert only(run.events, ResultEvent)[-1].success


def test_opencode_invalid_key_is_classified_auth(workspace: Path, home: Path) -> None:
    with ModelServer([Turn(text="never")]) as server:
        server.fail_next(401, times=50)
        run = run_cli(OpenCodeAgent(), opencode_request(workspace, server, "Hi"), home, record="auth_failed")

    error = OpenCodeAgent().classify_failure(
        run.exit_code, run.stderr[-2000:], run.events, secret_name="OPENAI_API_KEY"
    )
    assert error is not None and error.kind == "auth"
    assert "OPENAI_API_KEY" in error.message


# -- Gemini ---------------------------------------------------------------------------------------

GEMINI_MODEL = "gemini-2.5-pro"


def gemini_request(workspace: Path, home: Path, server: ModelServer, prompt: str, **kwargs: Any) -> AgentRequest:
    config = {"cli": require_cli("gemini"), **kwargs.pop("config", {})}
    env = {"GEMINI_API_KEY": "gm-test", "HOME": str(home), **kwargs.pop("env", {})}
    return make_request(
        workspace, prompt, config=config, env=env, model=GEMINI_MODEL, base_url=server.url, max_turns=5, **kwargs
    )


def test_gemini_writes_a_file_with_its_own_tool_and_reports_session_model_and_usage(
    workspace: Path, home: Path
) -> None:
    target = workspace / "hello.txt"
    turns = [
        Turn(text="Writing the file now, as asked by the user.",
             tool_calls=(ToolCall("write_file", {"file_path": str(target), "content": "hello from gemini\n"}),)),
        Turn(text="Done: wrote hello.txt."),
    ]
    skills = {"house-style": "Always end files with the word BANANA-SKILL."}
    with ModelServer(turns) as server:
        request = gemini_request(workspace, home, server, "Create hello.txt", skills=skills)
        run = run_cli(GeminiAgent(), request, home, record="success")
        calls = server.model_requests()

    assert run.exit_code == 0, run.stderr
    assert target.read_text() == "hello from gemini\n"
    assert calls and calls[0].headers.get("x-goog-api-key") == "gm-test"
    assert "BANANA-SKILL" in repr(calls[0].body), "the skill text reaches the model"
    assert not (workspace / "GEMINI.md").exists()
    assert [e.name for e in only(run.events, ToolUseEvent)] == ["write_file"]
    results = only(run.events, ToolResultEvent)
    assert results and not results[0].is_error and results[0].output
    assert len(only(run.events, SessionEvent)[0].session_id) == 36
    # text chunks of one message become one text
    merged = GeminiAgent().parse_lines(run.stdout.splitlines())
    assert "Writing the file now, as asked by the user." in [e.text for e in merged if isinstance(e, TextEvent)]
    usage = only(run.events, UsageEvent)
    assert [(u.input_tokens, u.output_tokens, u.model) for u in usage] == [(2400, 160, GEMINI_MODEL)]
    totals = UsageTotals()
    totals.add_all(run.events)
    assert totals.cost_imputed and totals.cost_usd > 0
    assert only(run.events, ResultEvent)[-1].success
    assert GeminiAgent().classify_failure(run.exit_code, run.stderr, run.events) is None


def test_gemini_lasting_429_gives_up_soon_and_is_classified_rate_limited(workspace: Path, home: Path) -> None:
    with ModelServer([Turn(text="never")]) as server:
        server.fail_next(429, times=50, retry_after=0)
        run = run_cli(GeminiAgent(), gemini_request(workspace, home, server, "Hi"), home, record="rate_limited")
        calls = len(server.model_requests())

    assert run.exit_code != 0
    assert calls <= 2, "the CLI's own retries are bounded (general.maxAttempts)"
    error = GeminiAgent().classify_failure(run.exit_code, run.stderr[-2000:], run.events)
    assert error is not None and error.kind == "rate_limited" and error.retryable


def test_gemini_invalid_key_is_classified_auth_naming_the_secret(workspace: Path, home: Path) -> None:
    with ModelServer([Turn(text="never")]) as server:
        server.fail_next(401, times=50)
        run = run_cli(GeminiAgent(), gemini_request(workspace, home, server, "Hi"), home, record="auth_failed")

    error = GeminiAgent().classify_failure(run.exit_code, run.stderr[-2000:], run.events)
    assert error is not None and error.kind == "auth" and not error.retryable
    assert "GEMINI_API_KEY" in error.message


# -- Copilot --------------------------------------------------------------------------------------

COPILOT_MODEL = "gpt-4.1"


@pytest.fixture(scope="module")
def copilot_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("copilot-cache")


def copilot_request(workspace: Path, server: ModelServer, prompt: str, **kwargs: Any) -> AgentRequest:
    config = {"cli": require_cli("copilot"), **kwargs.pop("config", {})}
    env = {"COPILOT_PROVIDER_API_KEY": "sk-copilot-test", "HOME": str(kwargs.pop("home")), **kwargs.pop("env", {})}
    return make_request(
        workspace, prompt, config=config, env=env, model=COPILOT_MODEL, base_url=server.openai_url, **kwargs
    )


def run_copilot(request: AgentRequest, home: Path, cache: Path, *, record: str | None = None) -> Run:
    share_dirs(cache, home, CopilotAgent().build_command(request).shared_dirs)
    return run_cli(CopilotAgent(), request, home, record=record, writable=(cache,))


def test_copilot_writes_a_file_with_its_own_tool_and_reports_session_and_usage(
    workspace: Path, home: Path, copilot_cache: Path
) -> None:
    target = workspace / "hello.txt"
    turns = [
        Turn(text="Writing.",
             tool_calls=(ToolCall("create", {"path": str(target), "file_text": "hello from copilot\n"}),)),
        Turn(text="Done: wrote hello.txt."),
    ]
    skills = {"house-style": "Always end files with the word MANGO-SKILL."}
    with ModelServer(turns) as server:
        request = copilot_request(workspace, server, "Create hello.txt", skills=skills, home=home)
        run = run_copilot(request, home, copilot_cache, record="success")
        calls = [r for r in server.model_requests() if r.body.get("tools")]

    assert run.exit_code == 0, run.stderr
    assert target.read_text() == "hello from copilot\n"
    assert calls and calls[0].headers.get("authorization") == "Bearer sk-copilot-test"
    assert "MANGO-SKILL" in repr(calls[0].body), "the skill text reaches the model"
    assert (copilot_cache / "copilot-pkg").is_dir() and any((copilot_cache / "copilot-pkg").iterdir())
    assert [e.name for e in only(run.events, ToolUseEvent)] == ["create"]
    assert only(run.events, ToolResultEvent)[0].output.startswith("Created file")
    assert len(only(run.events, SessionEvent)[0].session_id) == 36
    usage = only(run.events, UsageEvent)
    assert [(u.input_tokens, u.output_tokens, u.model) for u in usage] == [(2400, 160, COPILOT_MODEL)]
    totals = UsageTotals()
    totals.add_all(run.events)
    assert totals.cost_imputed and totals.cost_usd == pytest.approx((2400 * 2.0 + 160 * 8.0) / 1e6)
    assert only(run.events, ResultEvent)[-1].success
    assert CopilotAgent().classify_failure(run.exit_code, run.stderr, run.events) is None


def test_copilot_lasting_429_is_classified_rate_limited(workspace: Path, home: Path, copilot_cache: Path) -> None:
    with ModelServer([Turn(text="never")]) as server:
        server.fail_next(429, times=50, retry_after=0)
        request = copilot_request(workspace, server, "Hi", home=home)
        run = run_copilot(request, home, copilot_cache, record="rate_limited")

    error = CopilotAgent().classify_failure(run.exit_code, run.stderr[-2000:], run.events)
    assert error is not None and error.kind == "rate_limited" and error.retryable


def test_copilot_invalid_key_is_classified_auth_naming_the_provider_key(
    workspace: Path, home: Path, copilot_cache: Path
) -> None:
    with ModelServer([Turn(text="never")]) as server:
        server.fail_next(401, times=50)
        request = copilot_request(workspace, server, "Hi", home=home)
        run = run_copilot(request, home, copilot_cache, record="auth_failed")

    adapter = CopilotAgent()
    error = adapter.classify_failure(run.exit_code, run.stderr[-2000:], run.events,
                                     secret_name=adapter.secret_name(request))
    assert error is not None and error.kind == "auth" and not error.retryable
    assert "COPILOT_PROVIDER_API_KEY" in error.message
