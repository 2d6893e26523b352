"""The fake GitHub speaks GitHub's published REST shapes, not a private dialect.

Every JSON body the fake serves through a whole PR life (open, CI, review with a line comment, merge, branch
protection) is validated against the response schema GitHub publishes for that route and status, from npm
`@octokit/openapi` (`.ci/run` installs it and sets OPTIO_GITHUB_OPENAPI to its dereferenced description).
Skipped locally without it; required in CI.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from tests.support.fake_github import FakeGitHub

SPEC_ENV = "OPTIO_GITHUB_OPENAPI"
TOKEN = "ghp_optio_token_7f3a9c"
PERSON = "ghp_person_token_55e1"


def load_spec() -> dict[str, Any]:
    path = os.environ.get(SPEC_ENV)
    if not path:
        if os.environ.get("CI"):
            pytest.fail(f"{SPEC_ENV} is not set: .ci/run installs @octokit/openapi and sets it")
        pytest.skip(f"{SPEC_ENV} not set (GitHub's OpenAPI description from npm @octokit/openapi)")
    return json.loads(Path(path).read_text())


def as_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema → JSON Schema: ``nullable: true`` becomes a ``null`` alternative."""
    if isinstance(node, list):
        return [as_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: as_json_schema(v) for k, v in node.items() if k not in ("nullable", "example", "examples")}
    if node.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


def response_schema(spec: dict[str, Any], method: str, template: str, status: int) -> Any:
    operation = spec["paths"][template][method.lower()]
    response = operation["responses"][str(status)]
    return as_json_schema(response["content"]["application/json"]["schema"])


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t", "GIT_TERMINAL_PROMPT": "0"})


def test_every_response_the_fake_serves_matches_githubs_openapi(tmp_path: Path) -> None:
    spec = load_spec()
    with FakeGitHub(tmp_path / "gh") as fake:
        repo = fake.create_repo("acme", "shapes", ci_command="exit 1")
        repo.required_checks = ["ci"]
        issue = fake.create_issue(repo, "an issue")
        clone = tmp_path / "clone"
        url = fake.remote_url(repo).replace("http://", f"http://x-access-token:{TOKEN}@")
        git("clone", "-q", url, str(clone), cwd=tmp_path)
        (clone / "a.txt").write_text("a\n")
        git("checkout", "-qb", "optio/1", cwd=clone)
        git("add", "-A", cwd=clone)
        git("commit", "-qm", "a", cwd=clone)
        git("push", "-q", "origin", "optio/1", cwd=clone)
        api = httpx.Client(base_url=fake.api_url + "/repos/acme/shapes", headers={"Authorization": f"token {TOKEN}"})
        pr = api.post("/pulls", json={"title": "A", "head": "optio/1", "base": "main", "body": f"Closes #{issue}"})
        assert pr.status_code == 201, pr.text
        number, sha = pr.json()["number"], pr.json()["head"]["sha"]
        fake.wait_ci_idle()
        for path in ("", "/pulls?state=all&head=acme:optio/1", f"/pulls/{number}", f"/commits/{sha}/check-runs",
                     f"/commits/{sha}/status", f"/pulls/{number}/reviews",
                     "/branches/main/protection/required_status_checks"):
            assert api.get(path).status_code == 200, path
        run_id = api.get(f"/commits/{sha}/check-runs").json()["check_runs"][0]["id"]
        assert api.get(f"/check-runs/{run_id}/annotations").status_code == 200
        assert "Run ci" in api.get(f"/actions/jobs/{run_id}/logs", follow_redirects=True).text
        review = fake.review_as(PERSON, repo, number, event="REQUEST_CHANGES", body="fix",
                                comments=[{"path": "a.txt", "line": 1, "body": "why"}])
        assert api.get(f"/pulls/{number}/reviews/{review}/comments").status_code == 200
        refused = api.put(f"/pulls/{number}/merge", json={"sha": sha, "merge_method": "squash"})
        assert refused.status_code == 405 and "Required status check" in refused.json()["message"]
        repo.required_checks = None
        fake.review_as(PERSON, repo, number, event="APPROVE", body="ok")
        merged = api.put(f"/pulls/{number}/merge", json={"sha": sha, "merge_method": "squash"})
        assert merged.status_code == 200, merged.text
        assert api.get(f"/pulls/{number}").json()["merged"] is True
        assert repo.issues[issue]["state"] == "closed"
        # A GitHub App's JWT mints an installation token.
        import jwt
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        fake.add_app(9, 99, key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo).decode())
        app_jwt = jwt.encode({"iss": "9", "iat": int(time.time()) - 60, "exp": int(time.time()) + 300}, key,
                             algorithm="RS256")
        minted = httpx.post(f"{fake.api_url}/app/installations/99/access_tokens",
                            headers={"Authorization": f"Bearer {app_jwt}"})
        assert minted.status_code == 201 and minted.json()["token"].startswith("ghs_")
        # A conditional request for an unchanged resource is a 304 with no body.
        etag = api.get(f"/pulls/{number}").headers["ETag"]
        assert api.get(f"/pulls/{number}", headers={"If-None-Match": etag}).status_code == 304
        # A rate limit as GitHub sends it.
        fake.rate_limited_until = time.time() + 5
        limited = api.get("")
        assert limited.status_code == 403 and limited.headers["X-RateLimit-Remaining"] == "0"
        assert int(limited.headers["X-RateLimit-Reset"]) > time.time()

    checked: set[tuple[str, str, int]] = set()
    for method, template, status, body in fake.served:
        schema = response_schema(spec, method, template, status)
        jsonschema.validate(body, schema)
        checked.add((method, template, status))
    expected = {("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", 200), ("POST", "/repos/{owner}/{repo}/pulls", 201),
                ("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs", 200),
                ("GET", "/repos/{owner}/{repo}/commits/{ref}/status", 200),
                ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews", 200),
                ("POST", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews", 200),
                ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}/comments", 200),
                ("PUT", "/repos/{owner}/{repo}/pulls/{pull_number}/merge", 200),
                ("GET", "/repos/{owner}/{repo}", 200), ("GET", "/repos/{owner}/{repo}/pulls", 200),
                ("GET", "/repos/{owner}/{repo}/check-runs/{check_run_id}/annotations", 200),
                ("GET", "/repos/{owner}/{repo}/branches/{branch}/protection/required_status_checks", 200),
                ("POST", "/app/installations/{installation_id}/access_tokens", 201)}
    assert expected <= checked, expected - checked


def request_schema(spec: dict[str, Any], method: str, template: str) -> Any:
    operation = spec["paths"][template][method.lower()]
    return as_json_schema(operation["requestBody"]["content"]["application/json"]["schema"])


def test_the_fakes_issues_match_githubs_openapi(tmp_path: Path) -> None:
    """The Issues routes ticket intake uses: list with filters, get, comment, close; and the requests the
    GitHub ticket provider sends are valid request bodies of those routes."""
    from optio.tickets import net
    from optio.tickets.base import TicketFilter, TicketSourceConfig
    from optio.tickets.github import GitHubTicketProvider

    spec = load_spec()
    with FakeGitHub(tmp_path / "gh") as fake:
        repo = fake.create_repo("acme", "issues")
        first = fake.create_issue(repo, "Crash", body="It crashes", labels=["bug", "optio"], assignee="reviewer")
        fake.create_issue(repo, "Question", labels=["question"])
        net.set_allowlist(["127.0.0.1"])
        try:
            provider = GitHubTicketProvider(TicketSourceConfig(id=1, workspace_id=1, kind="github",
                                                               api_url=fake.api_url, options={"repo": "acme/issues"}),
                                            TOKEN)
            found = provider.list_tickets(TicketFilter(label="optio"))
            assert [(t.external_id, t.key, t.labels, t.assignee) for t in found] == [
                (str(first), f"#{first}", ("bug", "optio"), "reviewer")]
            assert provider.list_tickets(TicketFilter(label="optio", assignee="nobody")) == []
            assert provider.get(str(first)).body == "It crashes"
            provider.comment(str(first), "picked up")
            provider.close(str(first), "merged")
        finally:
            net.set_allowlist([])
        api = httpx.Client(base_url=fake.api_url + "/repos/acme/issues", headers={"Authorization": f"token {TOKEN}"})
        assert [c["body"] for c in api.get(f"/issues/{first}/comments").json()] == ["picked up", "merged"]
        assert api.get(f"/issues/{first}").json()["state"] == "closed"
        assert api.get("/issues", params={"state": "closed"}).json()[0]["number"] == first
        sent = [json.loads(body) for method, path, body in fake.request_bodies if method in ("POST", "PATCH")]
    for body in sent:
        template = ("/repos/{owner}/{repo}/issues/{issue_number}/comments" if "state" not in body
                    else "/repos/{owner}/{repo}/issues/{issue_number}")
        jsonschema.validate(body, request_schema(spec, "POST" if "state" not in body else "PATCH", template))
    assert len(sent) == 3
    checked = set()
    for method, template, status, body in fake.served:
        jsonschema.validate(body, response_schema(spec, method, template, status))
        checked.add((method, template, status))
    assert {("GET", "/repos/{owner}/{repo}/issues", 200), ("GET", "/repos/{owner}/{repo}/issues/{issue_number}", 200),
            ("PATCH", "/repos/{owner}/{repo}/issues/{issue_number}", 200),
            ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments", 201),
            ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments", 200)} <= checked
