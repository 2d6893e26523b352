"""`optio repo ...`: register git repos that repo tasks work on."""

from __future__ import annotations

import shlex
from pathlib import Path
from urllib.parse import urlparse

import typer
from rich.table import Table

from optio.cli.client import fail
from optio.cli.common import AS_JSON, client_from, console, handle_errors, print_json, print_table

app = typer.Typer(help="Register and inspect repos.", no_args_is_help=True)


@app.command("add")
@handle_errors
def add(
    ctx: typer.Context,
    remote: str = typer.Argument(..., help="git URL, or a local path / file:// URL under the server's "
                                 "OPTIO_LOCAL_REMOTE_ROOTS"),
    name: str | None = typer.Option(None, "--name", help="Name in the workspace (default: from the URL)"),
    default_branch: str | None = typer.Option(None, "--default-branch", help="Default: the remote's HEAD"),
    ci_command: str | None = typer.Option(None, "--ci-command", help="Shell command run on each PR head"),
    require_approval: bool = typer.Option(False, "--require-approval/--no-require-approval",
                                          help="Whether a merge needs an approving review"),
    auto_merge: bool = typer.Option(True, "--auto-merge/--no-auto-merge",
                                    help="Merge by itself once CI and review allow it"),
    review_agent: str | None = typer.Option(None, "--review-agent", help="Agent type of the review agent"),
    review_command: str | None = typer.Option(None, "--review-command", help="Command of a script review agent"),
    review_prompt: str = typer.Option("", "--review-prompt", help="What the review agent is asked"),
    agent: str = typer.Option("script", "--agent", help="Default agent type for tasks"),
    command: str | None = typer.Option(None, "--command", help="Default script agent command for tasks"),
    max_concurrent: int | None = typer.Option(None, "--max-concurrent", min=1,
                                              help="Tasks of this repo running at once"),
    secret: list[str] | None = typer.Option(None, "--secret", help="Secret to inject (repeatable)"),
    credential_secret: str | None = typer.Option(
        None, "--credential-secret", help="Secret with the password/token Optio's git uses for the remote"
    ),
    forge: str | None = typer.Option(None, "--forge", help="github | gitlab | local (default: from the URL)"),
    api_url: str | None = typer.Option(None, "--api-url",
                                       help="The forge's API root (GitHub Enterprise, self-managed GitLab)"),
    token_secret: str | None = typer.Option(
        None, "--token-secret", help="Secret holding the forge token: used for git and for the forge's API"),
    webhook_secret: str | None = typer.Option(
        None, "--webhook-secret", help="Secret the forge signs its webhooks with (POST /api/forge-hooks/ID)"),
    app_id: int | None = typer.Option(None, "--app-id",
                                      help="GitHub App id (with --installation-id, --app-key-secret)"),
    installation_id: int | None = typer.Option(None, "--installation-id", help="GitHub App installation id"),
    app_key_secret: str | None = typer.Option(None, "--app-key-secret", help="Secret holding the App's private key"),
    draft: bool = typer.Option(False, "--draft/--no-draft", help="Open pull requests as drafts"),
    forge_ci: bool = typer.Option(True, "--forge-ci/--no-forge-ci",
                                  help="A hosted repo's PRs wait for the forge's own checks (off: it has no CI)"),
    as_json: bool = AS_JSON,
) -> None:
    """Register a git remote that tasks can work on (on GitHub or GitLab, the forge is detected from the URL)."""
    if token_secret and credential_secret and token_secret != credential_secret:
        raise fail("--token-secret and --credential-secret name the same thing; give one", code=2)
    options: dict[str, object] = {}
    if app_id is not None or installation_id is not None or app_key_secret is not None:
        options.update({"app_id": app_id, "installation_id": installation_id, "private_key_secret": app_key_secret})
    if draft:
        options["draft"] = True
    if not forge_ci:
        options["ci_required"] = False
    review_config: dict[str, object] = {}
    if review_command is not None:
        review_config["command"] = review_command
        review_agent = review_agent or "script"
    if not urlparse(remote).scheme and Path(remote).expanduser().exists():
        remote = str(Path(remote).expanduser().absolute())  # relative to where you are, not to the server
    body = {
        "remote_url": remote, "name": name, "default_branch": default_branch, "ci_command": ci_command,
        "require_approval": require_approval, "auto_merge": auto_merge, "review_agent_type": review_agent,
        "review_agent_config": review_config, "review_prompt": review_prompt, "agent_type": agent,
        "agent_config": {"command": command} if command else {}, "max_concurrent": max_concurrent,
        "secret_names": secret or [], "credential_secret": token_secret or credential_secret,
        "forge": forge, "api_url": api_url, "webhook_secret": webhook_secret, "forge_options": options,
    }
    repo = client_from(ctx).post("/api/repos", body)
    if as_json:
        print_json(repo)
    else:
        console.print(f"added repo [bold]{repo['name']}[/bold] (id {repo['id']}, branch {repo['default_branch']})")


@app.command("set")
@handle_errors
def set_repo(
    ctx: typer.Context,
    repo: str = typer.Argument(..., help="Repo name or id"),
    default_branch: str | None = typer.Option(None, "--default-branch", help="Must exist on the remote"),
    ci_command: str | None = typer.Option(None, "--ci-command", help="Shell command run on each PR; '' for no CI"),
    require_approval: bool | None = typer.Option(None, "--require-approval/--no-require-approval",
                                                 help="Whether a merge needs an approving review"),
    auto_merge: bool | None = typer.Option(None, "--auto-merge/--no-auto-merge",
                                           help="Merge by itself once CI and review allow it"),
    review_agent: str | None = typer.Option(None, "--review-agent",
                                            help="Agent type of the review agent; '' for none"),
    review_command: str | None = typer.Option(None, "--review-command",
                                              help="Command of a script review agent (exit 0 approves)"),
    review_prompt: str | None = typer.Option(None, "--review-prompt", help="What the review agent is asked"),
    agent: str | None = typer.Option(None, "--agent", help="Default agent type for tasks"),
    command: str | None = typer.Option(None, "--command", help="Default script agent command for tasks"),
    max_concurrent: int | None = typer.Option(None, "--max-concurrent", min=1,
                                              help="Tasks of this repo running at once"),
    secret: list[str] | None = typer.Option(None, "--secret", help="Replace the secret names (repeatable)"),
    webhook_secret: str | None = typer.Option(None, "--webhook-secret",
                                              help="Secret the forge signs its webhooks with; '' for none"),
    as_json: bool = AS_JSON,
) -> None:
    """Change a repo's settings; only the options given are changed."""
    body: dict[str, object] = {key: value for key, value in {
        "default_branch": default_branch, "ci_command": ci_command, "require_approval": require_approval,
        "auto_merge": auto_merge, "max_concurrent": max_concurrent, "review_prompt": review_prompt,
        "agent_type": agent, "review_agent_type": review_agent,
    }.items() if value is not None}
    if review_command is not None:
        body["review_agent_config"] = {"command": review_command}
        body.setdefault("review_agent_type", "script")
    if command is not None:
        body["agent_config"] = {"command": command}
    if secret is not None:
        body["secret_names"] = secret
    if webhook_secret is not None:
        body["webhook_secret"] = webhook_secret or None
    if not body:
        raise fail("nothing to change: give at least one option (see `optio repo set --help`)", code=2)
    data = client_from(ctx).request("PATCH", f"/api/repos/{repo}", json=body)
    if as_json:
        print_json(data)
    else:
        console.print(f"updated repo [bold]{data['name']}[/bold] (branch {data['default_branch']})")


app.command("update", hidden=True, help="Old name of `optio repo set`.")(set_repo)


@app.command("remove")
@handle_errors
def remove(ctx: typer.Context, repo: str = typer.Argument(..., help="Repo name or id")) -> None:
    """Remove a repo, its tasks' history and its git cache; refused while any of its tasks is unfinished."""
    client_from(ctx).request("DELETE", f"/api/repos/{repo}")
    console.print(f"removed repo [bold]{repo}[/bold]")


@app.command("list")
@handle_errors
def list_repos(ctx: typer.Context, as_json: bool = AS_JSON) -> None:
    """The workspace's repos and their loop settings."""
    repos = client_from(ctx).get("/api/repos")
    if as_json:
        print_json(repos)
        return
    table = Table("ID", "NAME", "REMOTE", "BRANCH", "CI", "APPROVAL", "AUTO-MERGE", "REVIEW AGENT")
    for r in repos:
        table.add_row(str(r["id"]), r["name"], r["remote_url"], r["default_branch"], r["ci_command"] or "",
                      "yes" if r["require_approval"] else "no", "yes" if r["auto_merge"] else "no",
                      r["review_agent_type"] or "")
    print_table(table)


@app.command("show")
@handle_errors
def show(ctx: typer.Context, repo: str = typer.Argument(..., help="Repo name or id"), as_json: bool = AS_JSON) -> None:
    """A repo's settings."""
    data = client_from(ctx).get(f"/api/repos/{repo}")
    if as_json:
        print_json(data)
        return
    for key, value in data.items():
        console.print(f"[bold]{key}:[/bold] {shlex.quote(str(value)) if key.endswith('command') else value}")
