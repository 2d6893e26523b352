"""Tenancy: a user of workspace B calling any resource route on workspace A's resources gets 404.

The routes are enumerated from the app itself, so a route added later is covered without editing this
test; a route with a path parameter this test has no value for fails it, asking for one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.git_remote import make_remote
from tests.support.optio_server import OptioServer

from optio.api.app import create_app
from optio.config import Settings
from optio.web import actions as web_actions
from optio.web import agent_pages as web_agent_pages
from optio.web import intake_pages as web_intake_pages
from optio.web import pages as web_pages

pytestmark = pytest.mark.slow

# Routes that create-or-update the caller's own resource by name: from B they act on B, never on A.
# For these the test checks that A's resource is untouched instead of expecting 404.
UPSERTS = {("PUT", "/api/secrets/{name}"), ("PUT", "/api/members/{username}"),
           # A kind's template is every workspace's own (built in until set): B reads and sets B's, never A's
           # (tests/e2e/test_prompt_templates_e2e.py checks what each workspace renders).
           ("GET", "/api/templates/{kind}"), ("PUT", "/api/templates/{kind}"), ("DELETE", "/api/templates/{kind}"),
           ("POST", "/api/templates/{kind}/preview")}
# Routes no login reaches: a forge's webhook is verified by the repo's webhook secret, not by a workspace
# (tests/e2e/test_github_loop.py checks that an unsigned delivery is refused and changes nothing).
UNSCOPED = {("POST", "/api/forge-hooks/{repo_id}")}
# Routes whose credential is a signature, not a workspace login: B's key means nothing there (401).
SIGNED = {("POST", "/api/hooks/{trigger_id}"), ("POST", "/api/ticket-hooks/{source_id}")}
# Dashboard forms that set the caller's own workspace-wide resource (a kind's default template), like UPSERTS.
HTML_UPSERTS = {("POST", "/templates/{kind}")}
# Minimal valid bodies per request schema, so a 404 is not pre-empted by body validation.
BODIES: dict[str, Any] = {
    "TicketLabels": {"add": ["from-b"]},
    "RunCreate": {"params": {}},
    "ReviewIn": {"comment": "looks fine"},
    "MergeIn": {"force": True},
    "MemberSet": {"role": "viewer"},
    "PasswordIn": {"password": "from-b-long-password"},
    "SecretSet": {"value": "from-b"},
    "TicketWork": {"repo": "ra", "agent_config": {"command": "true"}},
    "RepoUpdate": {"require_approval": False, "default_branch": "main"},
    "TriggerFireIn": {"params": {}},
    "JobUpdate": {"description": "from b"},
    "JobClone": {"name": "from-b"},
    "BlueprintRun": {"params": {}},
    "TaskMessageCreate": {"text": "from b"},
    "PersistentAgentUpdate": {"name": "from b"},
    "MessageIn": {"body": "from b"},
}


def api_routes(tmp_path: Path) -> list[tuple[str, str, str | None]]:
    """(method, path template, request body schema name) of every API route with a path parameter."""
    app = create_app(Settings(data_dir=tmp_path / "unused"), start_workers=False)
    spec = app.openapi()
    out = []
    for path, ops in spec["paths"].items():
        if "{" not in path:
            continue
        for method, op in ops.items():
            schema = (op.get("requestBody") or {}).get("content", {}).get("application/json", {}).get("schema", {})
            refs = [schema.get("$ref")] + [s.get("$ref") for s in schema.get("anyOf", [])]
            name = next((r.rsplit("/", 1)[1] for r in refs if r), None)
            out.append((method.upper(), path, name))
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("iso")
    server = OptioServer(tmp / "data").start()
    try:
        a = {}
        job = server.api("POST", "/api/jobs", json={"name": "ja", "prompt_template": "p",
                                                    "agent_config": {"command": "echo hi"}}).json()
        run = server.api("POST", "/api/jobs/ja/runs", json={}).json()
        server.wait_state(f"/api/runs/{run['id']}", {"completed"})
        remote = make_remote(tmp)
        repo = server.api("POST", "/api/repos", json={"remote_url": str(remote), "name": "ra",
                                                      "require_approval": True}).json()
        assert "id" in repo, repo
        task = server.api("POST", "/api/repo-tasks", json={
            "repo": "ra", "title": "t", "prompt": "p", "agent_type": "script",
            "agent_config": {"command": "echo changed > a.txt"}}).json()
        opened = server.wait_state(f"/api/repo-tasks/{task['id']}", {"pr_opened", "failed", "needs_attention"},
                                   timeout=90)
        assert opened["state"] == "pr_opened", opened
        secret = server.api("PUT", "/api/secrets/SA", json={"value": "a-secret-value"}).json()
        key = server.api("POST", "/api/apikeys", json={"name": "a-key"}).json()
        ticket = server.api("POST", "/api/tickets", json={"title": "a ticket", "repo": "ra"}).json()
        source = server.api("POST", "/api/ticket-sources", json={"name": "sa", "kind": "local"}).json()
        assert "id" in source, source
        trigger = server.api("POST", "/api/triggers", json={"type": "webhook", "target": "ja"}).json()
        notify = server.api("POST", "/api/notifications/webhooks", json={
            "url": "http://93.184.216.34/optio-isolation", "events": ["pr.merged"]}).json()
        blueprint = server.api("POST", "/api/blueprints", json={
            "name": "ba", "repo": "ra", "title_template": "t", "prompt_template": "p",
            "agent_config": {"command": "true"}}).json()
        server.api("POST", "/api/agents", json={"slug": "aa", "agent_config": {"command": "cat"}}).raise_for_status()
        server.api("POST", "/api/agents/aa/messages", json={"body": "hello"}).raise_for_status()
        server.wait_state("/api/agents/aa/turns/1", {"succeeded"})
        a = {"job_ref": [str(job["id"]), "ja"], "run_id": [str(run["id"])], "repo_ref": [str(repo["id"]), "ra"],
             "task_id": [str(task["id"])], "pr_id": [str(opened["pr_id"])], "name": ["SA"],
             "username": ["admin"], "key_id": [str(key["id"])], "number": [str(ticket["number"])],
             "trigger_id": [str(trigger["id"])], "blueprint_ref": [str(blueprint["id"]), "ba"],
             "webhook_id": [str(notify["id"])], "slug": ["aa"], "turn": ["1"], "ref": [str(source["id"]), "sa"],
             "source_id": [str(source["id"])], "kind": ["task"]}
        assert secret["name"] == "SA"
        server.api("POST", "/api/workspaces", json={"slug": "b"}).raise_for_status()
        bob = server.api("PUT", "/api/members/bob", headers={"X-Optio-Workspace": "b"},
                         json={"role": "admin", "create_api_key": True}).json()
        server.api("DELETE", "/api/members/admin", headers={"X-Optio-Workspace": "b"})
        yield server, a, bob["api_key"], tmp
    finally:
        server.stop()


def expand(path: str, values: dict[str, list[str]]) -> list[str]:
    params = re.findall(r"{(\w+)}", path)
    missing = [p for p in params if p not in values]
    assert not missing, f"no workspace-A value for path parameter(s) {missing} of {path}: add one to the fixture"
    paths = [path]
    for p in params:
        paths = [q.replace("{" + p + "}", v) for q in paths for v in values[p]]
    return paths


def test_every_resource_route_is_404_across_workspaces(world: Any) -> None:
    server, a, bob_key, tmp = world
    checked = 0
    for method, template, body_name in api_routes(tmp):
        if (method, template) in UPSERTS:
            continue
        if (method, template) in UNSCOPED:
            res = server.api(method, template.replace("{repo_id}", a["repo_ref"][0]), token=bob_key, json={})
            assert res.status_code in (204, 401), (method, template, res.status_code)  # a local repo: no hooks
            continue
        if (method, template) in SIGNED:
            for path in expand(template, a):
                assert server.api(method, path, token=bob_key, json={}).status_code == 401, path
            continue
        body = None
        if body_name is not None:
            assert body_name in BODIES, f"add a minimal {body_name} body for {method} {template}"
            body = BODIES[body_name]
        for path in expand(template, a):
            res = server.api(method, path, token=bob_key, json=body)
            assert res.status_code == 404, (method, path, res.status_code, res.text[:300])
            assert res.json()["error"]["code"] == "not_found"
            checked += 1
    assert checked >= 25


def test_workspace_a_sees_its_own_resources_on_the_same_routes(world: Any) -> None:
    """The ids used above are real: A's admin reads every one of them (so the 404s were not vacuous)."""
    server, a, _bob, tmp = world
    for method, template, _body in api_routes(tmp):
        if method != "GET" or template.endswith("/stream"):
            continue
        for path in expand(template, a):
            res = server.api("GET", path)
            assert res.status_code == 200, (path, res.status_code, res.text[:300])


def test_upserts_from_b_never_touch_a(world: Any) -> None:
    server, _a, bob_key, _tmp = world
    before = server.api("GET", "/api/secrets").json()
    res = server.api("PUT", "/api/secrets/SA", token=bob_key, json={"value": "from-b-value"})
    assert res.status_code == 200 and res.json()["created"] is True
    assert server.api("GET", "/api/secrets").json() == before
    members_a = server.api("GET", "/api/members").json()
    # B's admin shares no workspace with A's admin: the name is "not found", as if nobody had it.
    res = server.api("PUT", "/api/members/admin", token=bob_key, json={"role": "viewer"})
    assert res.status_code == 404 and "created" not in res.text
    assert server.api("GET", "/api/members").json() == members_a
    assert server.api("GET", "/api/me").json()["workspace"]["role"] == "admin"


def test_references_inside_bodies_and_queries_are_scoped(world: Any) -> None:
    server, a, bob_key, _tmp = world
    job_id, repo_id = a["job_ref"][0], a["repo_ref"][0]
    checks = [
        ("POST", "/api/tasks", {"json": {"type": "job_run", "job": job_id}}),
        ("POST", "/api/tasks", {"json": {"type": "repo_task", "repo": repo_id, "title": "x", "prompt": "y"}}),
        ("POST", "/api/repo-tasks", {"json": {"repo": "ra", "title": "x", "prompt": "y"}}),
        ("PUT", "/api/secrets/NEW", {"json": {"value": "v-from-b", "repo": repo_id}}),
        ("GET", "/api/secrets", {"params": {"repo": "ra"}}),
        ("GET", "/api/repo-tasks", {"params": {"repo": repo_id}}),
        ("GET", "/api/runs/1/logs", {}),
        ("GET", "/api/prs/resolve", {"params": {"ref": a["task_id"][0]}}),
        ("GET", "/api/prs/diff", {"params": {"ref": a["task_id"][0]}}),
    ]
    for method, path, kwargs in checks:
        res = server.api(method, path, token=bob_key, **kwargs)
        assert res.status_code == 404, (method, path, res.status_code, res.text[:300])
    # Listings from B show nothing of A.
    for path in ("/api/jobs", "/api/repos", "/api/prs", "/api/agents"):
        assert server.api("GET", path, token=bob_key).json() == [], path
    assert server.api("GET", "/api/tasks", token=bob_key).json()["items"] == []
    assert server.api("GET", "/api/runs", token=bob_key).json()["items"] == []
    audit_b = server.api("GET", "/api/audit", token=bob_key).json()["items"]
    assert audit_b and all(e["target_id"] not in ("ja", "ra") and e["action"] != "create_job" for e in audit_b)


def html_routes() -> list[tuple[str, str]]:
    """(method, path template) of every dashboard route with a path parameter (the pages and their forms)."""
    out = []
    for route in [*web_pages.router.routes, *web_actions.router.routes, *web_agent_pages.router.routes,
                  *web_intake_pages.router.routes]:
        path = getattr(route, "path", "")
        if "{" in path:
            out += [(method, path) for method in sorted(getattr(route, "methods", set()) - {"HEAD"})
                    if (method, path) not in HTML_UPSERTS]
    return out


def test_dashboard_pages_forms_and_event_stream_show_nothing_across_workspaces(world: Any) -> None:
    server, a, _bob_key, _tmp = world
    assert server.api("PUT", "/api/users/bob/password", json={"password": "bob-browser-password"}).status_code == 204
    browser = httpx.Client(base_url=server.url, timeout=30)
    form = browser.get("/login").text
    csrf = re.search(r"name='csrf_token' value='([^']+)'", form).group(1)  # type: ignore[union-attr]
    assert browser.post("/login", data={"username": "bob", "password": "bob-browser-password",
                                        "csrf_token": csrf}).status_code == 303
    page_csrf = re.search(r"name='csrf-token' content='([^']+)'", browser.get("/").text).group(1)  # type: ignore[union-attr]
    # A PR page is named by its id, or as REPO_ID-NUMBER for a hosted forge's.
    values = {**a, "intent": ["cancel", "retry"], "action": ["approve", "merge"],
              "pr_ref": [a["pr_id"][0], f"{a['repo_ref'][0]}-1"]}
    checked = 0
    for method, template in html_routes():
        trigger_intents = {"intent": ["fire", "pause", "resume", "delete"]} if template.startswith("/triggers/") else {}
        for path in expand(template, {**values, **trigger_intents}):
            if method == "GET":
                res = browser.get(path)
            else:
                res = browser.post(path, data={"csrf_token": page_csrf, "comment": "x", "title": "t", "prompt": "p"})
            assert res.status_code == 404, (method, path, res.status_code, res.text[:300])
            checked += 1
    assert checked >= 10
    # A's names appear on none of B's pages, although A's admin sees them on the same pages.
    for path in ("/", "/tasks", "/jobs", "/repos", "/prs", "/tickets", "/costs", "/settings", "/triggers",
                 "/blueprints", "/templates"):
        text = browser.get(path).text
        assert ">ja<" not in text and ">ra<" not in text and ">ba<" not in text and "a ticket" not in text, path
        assert f"/api/hooks/{a['trigger_id'][0]}" not in text, path
    # The event stream from B replays nothing of A.
    events = []
    with browser.stream("GET", "/api/events/stream", params={"after": 0}) as res:
        assert res.status_code == 200
        for line in res.iter_lines():
            if line.startswith("event: live"):
                break
            if line.startswith("data: {\"event_id\""):
                events.append(line)
    a_runs = {("job_run", int(r)) for r in a["run_id"]} | {("repo_task", int(t)) for t in a["task_id"]}
    assert not [e for e in events if (json.loads(e[6:])["kind"], json.loads(e[6:])["run_id"]) in a_runs]


def test_the_inter_agent_api_reaches_only_its_tokens_workspace(world: Any) -> None:
    """The inter-agent routes take a turn's token, not a login: B's API key gets 401 on every one of them, and a
    token of a workspace-B agent's turn finds nothing of A (a slug of A is 404, as one that does not exist)."""
    import time

    from optio.security import agent_tokens
    from optio.services import persistent_agents
    from optio.store import persistent_agents as agent_store
    from optio.store.db import Database
    from optio.store.models import AgentMessage, Workspace
    from optio.store.types import utcnow

    server, _a, bob_key, tmp = world
    routes = {(m, p) for m, p, _ in api_routes_all(tmp) if p.startswith("/api/agent-msg/")}
    assert routes == {("GET", "/api/agent-msg/peers"), ("GET", "/api/agent-msg/inbox"),
                      ("POST", "/api/agent-msg/send"), ("POST", "/api/agent-msg/broadcast")}, \
        "a new inter-agent route: check it here"
    db = Database(f"sqlite:///{server.data_dir / 'optio.db'}")
    secret = (server.data_dir / "session.secret").read_bytes().strip()
    with db.read() as s:
        ws_b = s.query(Workspace).filter_by(slug="b").one().id
    for ws, slug in ((1, "a-agent"), (ws_b, "b-agent")):
        persistent_agents.create_agent(db, ws, {"slug": slug, "agent_type": "script",
                                                "agent_config": {"command": "true"}})
    tokens = {}
    with db.write() as s:
        for ws, slug in ((1, "a-agent"), (ws_b, "b-agent")):
            agent = agent_store.get(s, ws, slug)
            agent.state = "paused"  # takes messages, starts no turn of its own: the turn below is the test's
            turn, _ = agent_store.start_turn(s, agent, number=1, now=utcnow(), max_messages=10)
            tokens[slug] = agent_tokens.issue(secret, agent_id=agent.id, workspace_id=ws, turn_id=turn.id,
                                              expires_at=time.time() + 300)
    bodies = {"/api/agent-msg/send": {"to": "a-agent", "body": "from b"},
              "/api/agent-msg/broadcast": {"body": "from b to all"}}
    for method, path in sorted(routes):
        assert server.api(method, path, token=bob_key, json=bodies.get(path)).status_code == 401, path
    b_token = tokens["b-agent"]
    assert server.api("GET", "/api/agent-msg/peers", token=b_token).json() == {"peers": []}
    res = server.api("POST", "/api/agent-msg/send", token=b_token, json={"to": "a-agent", "body": "from b"})
    assert res.status_code == 404 and res.json()["error"]["code"] == "not_found", res.text
    assert server.api("POST", "/api/agent-msg/broadcast", token=b_token,
                      json={"body": "from b to all"}).json() == {"sent": []}
    res = server.api("POST", "/api/agent-msg/send", token=tokens["a-agent"], json={"to": "b-agent", "body": "x"})
    assert res.status_code == 404, res.text
    assert server.api("GET", "/api/agent-msg/inbox", token=b_token).json() == {"messages": []}
    def crossed() -> int:
        with db.read() as s:
            ids = [agent_store.get(s, ws, slug).id for ws, slug in ((1, "a-agent"), (ws_b, "b-agent"))]
            return s.query(AgentMessage).filter(AgentMessage.agent_id.in_(ids)).count()

    assert crossed() == 0  # nothing crossed, in either direction

    # The dashboard's agent pages and chat box: from B, A's agent is not found, and B's list shows only B's.
    pages = {(m, r.path) for r in web_agent_pages.router.routes for m in getattr(r, "methods", set()) - {"HEAD"}
             if "{" in getattr(r, "path", "")}
    assert pages == {("GET", "/agents/{slug}"), ("POST", "/agents/{slug}/messages")}, "check a new agent page here"
    assert server.api("PUT", "/api/users/bob/password", json={"password": "bob-agent-password"}).status_code == 204
    browser = httpx.Client(base_url=server.url, timeout=30)
    form = browser.get("/login").text
    csrf = re.search(r"name='csrf_token' value='([^']+)'", form).group(1)  # type: ignore[union-attr]
    assert browser.post("/login", data={"username": "bob", "password": "bob-agent-password",
                                        "csrf_token": csrf}).status_code == 303
    page_csrf = re.search(r"name='csrf-token' content='([^']+)'", browser.get("/").text).group(1)  # type: ignore[union-attr]
    assert browser.get("/agents/a-agent").status_code == 404
    assert browser.post("/agents/a-agent/messages", data={"body": "x", "csrf_token": page_csrf}).status_code == 404
    listing = browser.get("/agents").text
    assert "b-agent" in listing and "a-agent" not in listing
    assert server.api("GET", "/api/agents/a-agent").status_code == 200  # the slug is real: A sees it
    assert crossed() == 0


def api_routes_all(tmp_path: Path) -> list[tuple[str, str, str | None]]:
    """Every API route, with or without a path parameter."""
    app = create_app(Settings(data_dir=tmp_path / "unused-all"), start_workers=False)
    return [(method.upper(), path, None) for path, ops in app.openapi()["paths"].items() for method in ops]


def browser_login(server: OptioServer, username: str, password: str) -> tuple[httpx.Client, str]:
    """A signed-in browser session (cookies kept by the client) and its page CSRF token."""
    browser = httpx.Client(base_url=server.url, timeout=30)
    form = browser.get("/login").text
    csrf = re.search(r"name='csrf_token' value='([^']+)'", form).group(1)  # type: ignore[union-attr]
    assert browser.post("/login", data={"username": username, "password": password,
                                        "csrf_token": csrf}).status_code == 303
    page_csrf = re.search(r"name='csrf-token' content='([^']+)'", browser.get("/").text).group(1)  # type: ignore[union-attr]
    return browser, page_csrf


def stream_events(browser: httpx.Client, **params: Any) -> tuple[int, list[tuple[str, int]]]:
    """(status, (kind, run id) of every event replayed from the start until the stream is live)."""
    seen = []
    with browser.stream("GET", "/api/events/stream", params={"after": 0, **params}) as res:
        if res.status_code != 200:
            return res.status_code, []
        for line in res.iter_lines():
            if line.startswith("event: live"):
                break
            if line.startswith("data: {\"event_id\""):
                data = json.loads(line[6:])
                seen.append((data["kind"], data["run_id"]))
    return 200, seen


def test_workspace_switcher_shows_only_the_chosen_workspace_and_refuses_others(world: Any) -> None:
    """A member of two workspaces switches in the header: pages, the browser's API calls and the event stream
    follow the session's choice; a workspace they are not in is refused (404), by form, cookie or query."""
    server, a, _bob_key, _tmp = world
    assert server.api("PUT", "/api/me/password", json={"password": "admin-switch-password"}).status_code == 204
    server.api("POST", "/api/workspaces", json={"slug": "c"}).raise_for_status()
    browser, csrf = browser_login(server, "admin", "admin-switch-password")
    a_runs = {("job_run", int(r)) for r in a["run_id"]} | {("repo_task", int(t)) for t in a["task_id"]}
    header = browser.get("/repos").text
    assert 'name="workspace"' in header and '<option value="c"' in header and '<option value="b"' not in header
    assert ">ra<" in header
    status, seen = stream_events(browser)
    assert status == 200 and a_runs & set(seen), "the default workspace's events replay (not vacuous)"
    # Not a member of b: refused, and nothing is remembered.
    refused = browser.post("/workspace", data={"csrf_token": csrf, "workspace": "b", "next": "/repos"})
    assert refused.status_code == 404 and "optio_workspace" not in browser.cookies
    assert browser.post("/workspace", data={"csrf_token": "wrong", "workspace": "c"}).status_code == 403
    assert "optio_workspace" not in browser.cookies
    # Switch to c: every page and the browser's own API calls now show c, which has nothing of A.
    switched = browser.post("/workspace", data={"csrf_token": csrf, "workspace": "c", "next": "/repos/1"})
    assert switched.status_code == 303 and switched.headers["location"] == "/repos"
    assert browser.get("/api/repos").json() == [] and browser.get("/api/prs").json() == []
    for path in ("/", "/tasks", "/jobs", "/repos", "/prs", "/tickets"):
        text = browser.get(path).text
        assert ">ja<" not in text and ">ra<" not in text and "a ticket" not in text, path
        assert '<option value="c" selected' in text, path
    assert browser.get(f"/tasks/{a['task_id'][0]}").status_code == 404
    assert browser.get(f"/prs/{a['pr_id'][0]}").status_code == 404
    status, seen = stream_events(browser)
    assert status == 200 and not a_runs & set(seen), "the stream follows the session's choice"
    # The stream's query parameter (EventSource sends no headers) is checked for membership.
    assert stream_events(browser, workspace="b")[0] == 404
    status, seen = stream_events(browser, workspace="default")
    assert status == 200 and a_runs & set(seen)
    # The choice is bound to its session: copied into another session it is ignored (that one shows its default).
    other, _ = browser_login(server, "admin", "admin-switch-password")
    other.cookies.set("optio_workspace", browser.cookies["optio_workspace"])
    assert [r["name"] for r in other.get("/api/repos").json()] == ["ra"]
    # An explicit header still wins over the session's choice.
    assert [r["name"] for r in browser.get("/api/repos", headers={"X-Optio-Workspace": "default"}).json()] == ["ra"]
    back = browser.post("/workspace", data={"csrf_token": csrf, "workspace": "default", "next": "/repos"})
    assert back.status_code == 303 and ">ra<" in browser.get("/repos").text

