"""Request and response bodies of the REST API."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool
from pydantic_core import PydanticCustomError

from optio.api.account_schemas import SECRET_NAME_PATTERN

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
MAX_DB_INT = 2**63 - 1  # the largest value a database integer column (and SQLite's driver) takes

# --- strict numbers ---------------------------------------------------------------------------------------
# Path and query parameters arrive as text. Lax parsing reads "1 ", "+1" and "1.0" as 1, so a request for
# `/api/apikeys/1%20` acted on key 1; these types take digits and nothing else. Bodies are strict models.


def _digits_only(value: Any) -> Any:
    if isinstance(value, bool):
        raise PydanticCustomError("int_type", "must be an integer")
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit() and len(value) <= 19):
            raise PydanticCustomError("int_digits", "must be a whole number written with the digits 0-9 only")
        return int(value)
    return value


Id = Annotated[int, Field(ge=1, le=MAX_DB_INT), BeforeValidator(_digits_only)]
"""A row id in a path: 1..2**63-1, digits only."""
Seq = Annotated[int, Field(ge=0, le=MAX_DB_INT), BeforeValidator(_digits_only)]
"""A log cursor (`after`): 0..2**63-1, digits only; anything beyond cannot be a stored sequence number."""
PageLimit = Annotated[int, Field(ge=1, le=500), BeforeValidator(_digits_only)]
LogLimit = Annotated[int, Field(ge=1, le=10_000), BeforeValidator(_digits_only)]

# --- free text --------------------------------------------------------------------------------------------
# Titles, names, branches and commands end up in git commit messages, ref names, argv and shells. A control
# character there (a NUL makes `git commit` fail on every retry) is refused here, with the field named, rather
# than jamming a run later. Multi-line text (prompts, bodies, commands) may hold newlines and tabs.

LINE_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"
BRANCH_PATTERN = r"^[^-\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
TEXT_PATTERN = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$"
_TEXT_ALLOWED = frozenset("\n\t")


def bad_character(text: str, *, multiline: bool) -> str | None:
    """Why `text` cannot go to git or a shell (a control character or a lone surrogate), else None."""
    for ch in text:
        category = unicodedata.category(ch)
        if category == "Cc" and not (multiline and ch in _TEXT_ALLOWED):
            return f"must not contain control characters (found U+{ord(ch):04X})"
        if category == "Cs":
            return f"must be valid Unicode (found a lone surrogate U+{ord(ch):04X})"
    return None


def _refuse(problem: str | None) -> None:
    if problem:
        raise PydanticCustomError("control_character", "{problem}", {"problem": problem})


def _line(text: str) -> str:
    _refuse(bad_character(text, multiline=False))
    return text


def _text(text: str) -> str:
    _refuse(bad_character(text, multiline=True))
    return text


def _branch(text: str) -> str:
    _refuse(bad_character(text, multiline=False))
    if text.startswith("-"):
        raise PydanticCustomError("branch_name", "a branch name must not start with '-'")
    return text


def _config(config: dict[str, Any]) -> dict[str, Any]:
    """Agent configs carry commands, models and argv: every string in them, keys included, is checked."""

    def walk(value: Any, path: str, depth: int) -> None:
        if depth > 20:
            raise PydanticCustomError("too_deep", "is nested too deeply")
        if isinstance(value, str):
            problem = bad_character(value, multiline=True)
            _refuse(f"{path}: {problem}" if problem else None)
        elif isinstance(value, Mapping):
            for key, item in value.items():
                name = f"{path}.{key}" if path else str(key)
                problem = bad_character(str(key), multiline=False)
                _refuse(f"key {name!r}: {problem}" if problem else None)
                walk(item, name, depth + 1)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path}[{index}]", depth + 1)

    walk(config, "", 0)
    return config


Line = Annotated[str, AfterValidator(_line), Field(json_schema_extra={"pattern": LINE_PATTERN})]
"""One line of text: no control characters at all."""
Text = Annotated[str, AfterValidator(_text), Field(json_schema_extra={"pattern": TEXT_PATTERN})]
"""Multi-line text: newlines and tabs allowed, other control characters not."""
AgentConfig = Annotated[dict[str, Any], AfterValidator(_config)]
SecretName = Annotated[str, Field(pattern=SECRET_NAME_PATTERN)]
BranchName = Annotated[str, AfterValidator(_branch),
                       Field(min_length=1, max_length=200, json_schema_extra={"pattern": BRANCH_PATTERN})]
"""A branch name as typed: one line, not an option. Whether git accepts it is checked when it is used."""

STRICT_INPUT = ConfigDict(extra="forbid", strict=True)


def _param_value(value: Any) -> Any:
    """A parameter's value: text (checked like any text), a whole number or a boolean; its type is checked
    against the job's schema on start."""
    if isinstance(value, str):
        if len(value) > 200_000:
            raise PydanticCustomError("string_too_long", "must be at most 200000 characters")
        return _text(value)
    if isinstance(value, bool | int) and not (isinstance(value, int) and abs(value) > MAX_DB_INT):
        return value
    raise PydanticCustomError("param_type", "must be a string, a whole number or a boolean")


ParamValue = Annotated[Any, AfterValidator(_param_value),
                       Field(json_schema_extra={"anyOf": [{"type": "string", "maxLength": 200_000,
                                                           "pattern": TEXT_PATTERN},
                                                          {"type": "integer"}, {"type": "boolean"}]})]


class ParamSpecIn(BaseModel):
    model_config = STRICT_INPUT
    type: Literal["string", "integer", "boolean", "enum"] = "string"
    required: bool | None = Field(default=None, description="Default: required unless it has a default")
    default: ParamValue | None = None
    description: Text = Field(default="", max_length=2000)
    choices: list[Annotated[Line, Field(max_length=200)]] | None = Field(default=None, max_length=200,
                                                                         description="The values of an enum")


class JobCreate(BaseModel):
    model_config = STRICT_INPUT
    name: str = Field(pattern=NAME_PATTERN, description="Unique per workspace; letters, digits, . _ -")
    description: Text = Field(default="", max_length=10_000)
    prompt_template: Text = Field(min_length=1, max_length=200_000, description="May contain {{PARAM}} placeholders")
    agent_type: Line = Field(default="script", min_length=1, max_length=64)
    agent_config: AgentConfig = Field(default_factory=dict)
    params_schema: dict[Annotated[Line, Field(max_length=200)], ParamSpecIn] = Field(default_factory=dict)
    max_retries: int = Field(default=0, ge=0, le=100)
    max_concurrent_runs: int | None = Field(default=None, ge=1, le=10_000)
    budget_usd: float | None = Field(default=None, ge=0)
    timeout_s: float | None = Field(default=None, gt=0, le=7 * 24 * 3600)
    secret_names: list[SecretName] = Field(default_factory=list, max_length=100,
                                           description="Workspace secrets to inject; each must exist")


class JobUpdate(BaseModel):
    """The fields to change; those left out stay as they are."""

    model_config = STRICT_INPUT
    name: str | None = Field(default=None, pattern=NAME_PATTERN)
    description: Text | None = Field(default=None, max_length=10_000)
    prompt_template: Text | None = Field(default=None, min_length=1, max_length=200_000)
    agent_type: Line | None = Field(default=None, min_length=1, max_length=64)
    agent_config: AgentConfig | None = None
    params_schema: dict[Annotated[Line, Field(max_length=200)], ParamSpecIn] | None = None
    max_retries: int | None = Field(default=None, ge=0, le=100)
    max_concurrent_runs: int | None = Field(default=None, ge=1, le=10_000)
    budget_usd: float | None = Field(default=None, ge=0)
    timeout_s: float | None = Field(default=None, gt=0, le=7 * 24 * 3600)
    secret_names: list[SecretName] | None = Field(default=None, max_length=100)


class JobClone(BaseModel):
    model_config = STRICT_INPUT
    name: str = Field(pattern=NAME_PATTERN, description="The new job's name")


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    prompt_template: str
    agent_type: str
    agent_config: dict[str, Any]
    params_schema: dict[str, Any]
    max_retries: int
    max_concurrent_runs: int | None
    budget_usd: float | None
    timeout_s: float | None
    secret_names: list[str]
    created_at: datetime


class RunCreate(BaseModel):
    model_config = STRICT_INPUT
    params: dict[Annotated[Line, Field(max_length=200)], ParamValue] = Field(default_factory=dict)


class RunOut(BaseModel):
    id: int
    type: str = "job_run"
    job_id: int
    job_name: str
    state: str
    params: dict[str, Any]
    prompt: str
    attempts: int
    retry_count: int
    error: str | None
    control_intent: str | None
    version: int
    cost_usd: float
    cost_imputed: bool
    input_tokens: int
    output_tokens: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class RunPage(BaseModel):
    items: list[RunOut]
    next_cursor: str | None


class RunEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    event: str
    from_state: str | None
    to_state: str | None
    reason: str
    created_at: datetime


class LogLine(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    attempt: int
    stream: str
    text: str
    created_at: datetime


class LogPage(BaseModel):
    items: list[LogLine]
    last_seq: int
    state: str
    done: bool


class Health(BaseModel):
    status: str
    version: str
    database: str
    queue_depth: int
    # Stored secrets that do not decrypt (lost key version or tampered row): "degraded" while any exist.
    unreadable_secrets: int = 0


class ForgeOptions(BaseModel):
    """Settings only a hosted forge reads: a GitHub App instead of a token, draft pull requests."""

    model_config = STRICT_INPUT
    app_id: int | None = Field(default=None, ge=1, description="GitHub App id (with installation_id and "
                                                                "private_key_secret)")
    installation_id: int | None = Field(default=None, ge=1, description="The App's installation on the repo's owner")
    private_key_secret: str | None = Field(default=None, pattern=NAME_PATTERN,
                                           description="Secret holding the App's PEM private key")
    draft: bool = Field(default=False, description="Open pull requests as drafts")
    ci_required: bool = Field(default=True, description="PRs wait for the forge's own checks (false: no CI)")


class RepoCreate(BaseModel):
    model_config = STRICT_INPUT
    remote_url: Line = Field(min_length=1, max_length=2000, description=(
        "http(s), ssh or git URL; or a local path / file:// URL under OPTIO_LOCAL_REMOTE_ROOTS"))
    name: str | None = Field(default=None, pattern=NAME_PATTERN)
    default_branch: BranchName | None = Field(default=None, description="Must exist on the remote; default: its HEAD")
    ci_command: Text | None = Field(default=None, max_length=10_000)
    require_approval: bool = False
    auto_merge: bool = True
    max_concurrent: int | None = Field(default=None, ge=1, le=1000)
    agent_type: Line = Field(default="script", min_length=1, max_length=64)
    agent_config: AgentConfig = Field(default_factory=dict)
    review_agent_type: Line | None = Field(default=None, min_length=1, max_length=64)
    review_agent_config: AgentConfig = Field(default_factory=dict)
    review_prompt: Text = Field(default="", max_length=100_000)
    secret_names: list[SecretName] = Field(default_factory=list, max_length=100,
                                           description="Workspace secrets to inject into its tasks; each must exist")
    credential_secret: str | None = Field(
        default=None, pattern=NAME_PATTERN,
        description="Secret holding the password/token Optio's git uses for the remote (user name: in the URL); "
                    "on a hosted forge also the API token",
    )
    forge: Literal["local", "github", "gitlab"] | None = Field(
        default=None, description="Where PRs, CI and reviews live; default: detected from the URL (github.com, "
                                  "gitlab.com), else local")
    api_url: Line | None = Field(default=None, min_length=1, max_length=2000, description=(
        "The hosted forge's API root (GitHub Enterprise: https://HOST/api/v3); default: from the URL"))
    webhook_secret: str | None = Field(default=None, pattern=NAME_PATTERN,
                                       description="Secret the forge's webhooks are verified with")
    forge_options: ForgeOptions = Field(default_factory=ForgeOptions)


class RepoUpdate(BaseModel):
    """Change a repo's settings; fields left out keep their value. The remote and the name stay as registered."""

    model_config = STRICT_INPUT
    default_branch: BranchName | None = Field(default=None, description="Must exist on the remote")
    ci_command: Text | None = Field(default=None, max_length=10_000, description="Empty string: no CI")
    require_approval: bool | None = None
    auto_merge: bool | None = None
    max_concurrent: int | None = Field(default=None, ge=1, le=1000)
    agent_type: Line | None = Field(default=None, min_length=1, max_length=64)
    agent_config: AgentConfig | None = None
    review_agent_type: Line | None = Field(default=None, max_length=64, description="Empty string: no review agent")
    review_agent_config: AgentConfig | None = None
    review_prompt: Text | None = Field(default=None, max_length=100_000)
    secret_names: list[SecretName] | None = Field(
        default=None, max_length=100, description="Workspace or this repo's secrets; each must exist")
    webhook_secret: str | None = Field(default=None, pattern=NAME_PATTERN,
                                       description="Secret the forge's webhooks are verified with")


class RepoOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    remote_url: str
    default_branch: str
    ci_command: str | None
    require_approval: bool
    auto_merge: bool
    max_concurrent: int | None
    agent_type: str
    agent_config: dict[str, Any]
    review_agent_type: str | None
    review_agent_config: dict[str, Any]
    review_prompt: str
    secret_names: list[str]
    credential_secret: str | None = None
    forge: str = "local"
    api_url: str | None = None
    webhook_secret: str | None = None
    forge_options: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime


class RepoTaskCreate(BaseModel):
    model_config = STRICT_INPUT
    repo: Line = Field(min_length=1, max_length=200, description="Repo name or id")
    title: Line = Field(min_length=1, max_length=500, description="One line; becomes the commit and PR title")
    prompt: Text = Field(min_length=1, max_length=200_000)
    agent_type: Line | None = Field(default=None, min_length=1, max_length=64)
    agent_config: AgentConfig = Field(default_factory=dict)
    depends_on: list[Annotated[int, Field(ge=1, le=MAX_DB_INT)]] = Field(default_factory=list, max_length=100)
    priority: int = Field(default=0, ge=-1000, le=1000)
    max_retries: int = Field(default=1, ge=0, le=20)
    secret_names: list[SecretName] = Field(default_factory=list, max_length=100,
                                           description="Workspace or the repo's secrets; each must exist")


class AttemptOut(BaseModel):
    """One start of a run's agent (first run, retry or resume), with its own timestamps and outcome."""

    model_config = ConfigDict(from_attributes=True)

    attempt: int
    purpose: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    exit_code: int | None
    exit_reason: str | None


class RepoTaskOut(BaseModel):
    id: int
    type: str = "repo_task"
    repo_id: int
    repo: str
    title: str
    prompt: str
    state: str
    agent_type: str
    priority: int
    attempts: int
    resume_count: int
    depends_on: list[int]
    branch: str | None
    pr_id: int | None
    pr_number: int | None
    pr_state: str | None
    ci_status: str | None
    review_status: str | None
    pr_head_sha: str | None = Field(default=None, description="The PR's head commit")
    pr_ref: str | None = Field(default=None, description="The PR as `REPO#N` (what `optio pr show` takes)")
    cost_usd: float
    cost_imputed: bool
    input_tokens: int
    output_tokens: int
    agent_session_id: str | None
    error: str | None
    note: str | None
    control_intent: str | None
    version: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    human_resumes: int = Field(default=0, description="Resumes a person asked for; `resume_count` counts the "
                                                      "automatic ones, which OPTIO_MAX_AUTO_RESUMES caps")
    attempt_runs: list[AttemptOut] = Field(default_factory=list, description="Each agent start, oldest first")


class RepoTaskPage(BaseModel):
    items: list[RepoTaskOut]
    next_cursor: str | None


class TimelineLine(BaseModel):
    stream: str
    text: str


class TimelineSection(BaseModel):
    """The output of one run of a task: an agent attempt, a CI run on its PR or a review agent run."""

    kind: Literal["attempt", "ci", "review"]
    ref: int
    source: str = Field(description="`attempt N`, `ci #K on <sha>` or `review #R`")
    status: str | None
    started_at: datetime | None
    finished_at: datetime | None
    head_sha: str | None
    exit_code: int | None
    lines: list[TimelineLine]


class TaskTimelineLogs(BaseModel):
    task_id: int
    state: str
    done: bool = Field(description="The task ended: no section will grow any more")
    sections: list[TimelineSection]


class ReviewRunOut(BaseModel):
    """A review agent run (`type: pr_review`) on one head of a task's pull request."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    type: Literal["pr_review"] = "pr_review"
    task_id: int
    pr_id: int
    head_sha: str
    agent_type: str
    state: str
    verdict: str | None
    comments: str | None
    attempts: int
    error: str | None
    cost_usd: float
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ReviewIn(BaseModel):
    model_config = STRICT_INPUT
    comment: Text = Field(default="", max_length=100_000)


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    force: StrictBool = Field(default=False, description="Admins only: merge past red CI or a missing approval "
                                                         "(audited)")


class CiRunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    head_sha: str
    status: str
    exit_code: int | None
    output: str
    duration_s: float | None
    created_at: datetime | None = Field(description="None for a hosted forge's run (the forge keeps its times)")
    finished_at: datetime | None
    failure_kind: str | None = None  # with status "error": not_found | not_executable | timeout | could_not_run


class ReviewOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    head_sha: str
    verdict: str
    comments: str
    author: str
    created_at: datetime | None


class PullRequestOut(BaseModel):
    id: int | None = Field(description="The local forge's PR id (the `/api/prs/{id}` actions); None on a hosted "
                                       "forge, which keeps its PRs itself")
    repo_id: int
    repo: str
    number: int
    task_id: int | None
    title: str
    body: str
    head_branch: str
    head_sha: str
    base_branch: str
    base_sha: str | None
    state: str
    mergeable: bool | None
    conflicting_files: list[str]
    merged_sha: str | None
    ci_status: str | None
    review_status: str | None
    created_at: datetime | None
    merged_at: datetime | None
    closed_at: datetime | None
    forge: str = "local"


class PullRequestDetail(PullRequestOut):
    ci_runs: list[CiRunOut]
    reviews: list[ReviewOut]


class TicketCreate(BaseModel):
    model_config = STRICT_INPUT
    title: Line = Field(min_length=1, max_length=500)
    body: Text = Field(default="", max_length=200_000)
    repo: Line | None = Field(default=None, min_length=1, max_length=200, description="Repo name or id")
    labels: list[Annotated[Line, Field(min_length=1, max_length=100)]] = Field(default_factory=list, max_length=50)


class TicketLabels(BaseModel):
    """Labels to add and remove (a ticket trigger picks up a ticket that gains its label)."""

    model_config = STRICT_INPUT
    add: list[Annotated[Line, Field(min_length=1, max_length=100)]] = Field(default_factory=list, max_length=50)
    remove: list[Annotated[Line, Field(min_length=1, max_length=100)]] = Field(default_factory=list, max_length=50)


class TicketCommentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    author: str
    body: str
    created_at: datetime


class TicketWork(BaseModel):
    """Hand the ticket to an agent as a repo task (fields as for a repo task; the ticket gives the prompt)."""

    model_config = STRICT_INPUT
    repo: Line | None = Field(default=None, min_length=1, max_length=200)
    agent_type: Line | None = Field(default=None, min_length=1, max_length=64)
    agent_config: AgentConfig = Field(default_factory=dict)
    priority: int = Field(default=0, ge=-1000, le=1000)
    max_retries: int = Field(default=1, ge=0, le=20)
    secret_names: list[SecretName] = Field(default_factory=list, max_length=100)


class TicketOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number: int
    title: str
    body: str
    state: str
    repo_id: int | None
    task_id: int | None
    closed_reason: str | None
    created_at: datetime
    closed_at: datetime | None
    labels: list[str] = Field(default_factory=list)
