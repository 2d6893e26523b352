"""Each provider's `parse_webhook`: a delivery that does not verify is refused, one about something else is
ignored, a good one names the ticket. No network: verification needs only the secret and the body."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from optio.security import signatures
from optio.store.db import Database
from optio.tickets.base import BadTicketSignature, TicketSourceConfig
from optio.tickets.github import GitHubTicketProvider
from optio.tickets.gitlab import GitLabTicketProvider
from optio.tickets.local import LocalTicketProvider

SECRET = "whsec_test-secret"


def github() -> GitHubTicketProvider:
    return GitHubTicketProvider(TicketSourceConfig(1, 1, "github", "https://api.github.com",
                                                   {"repo": "acme/app"}), "ghp_x")


def gitlab() -> GitLabTicketProvider:
    return GitLabTicketProvider(TicketSourceConfig(1, 1, "gitlab", "https://gitlab.com",
                                                   {"project": "acme/app"}), "glpat-x")


def test_github_verifies_the_hmac_and_reads_issue_events_of_its_repo() -> None:
    body = json.dumps({"action": "labeled", "issue": {"number": 7}, "repository": {"full_name": "acme/app"}}).encode()
    good = {"X-GitHub-Event": "issues", "X-Hub-Signature-256": signatures.sign(SECRET, body),
            "X-GitHub-Delivery": "d-1"}
    [event] = github().parse_webhook(good, body, SECRET)
    assert (event.external_id, event.action, event.delivery_id) == ("7", "labeled", "d-1")
    with pytest.raises(BadTicketSignature):
        github().parse_webhook({**good, "X-Hub-Signature-256": signatures.sign("other", body)}, body, SECRET)
    with pytest.raises(BadTicketSignature):
        github().parse_webhook({"X-GitHub-Event": "issues"}, body, SECRET)
    with pytest.raises(BadTicketSignature):
        github().parse_webhook(good, body, None)  # a source without a secret accepts nothing
    assert github().parse_webhook({**good, "X-GitHub-Event": "push"}, body, SECRET) == []
    other = json.dumps({"action": "opened", "issue": {"number": 7}, "repository": {"full_name": "acme/other"}})
    assert github().parse_webhook({**good, "X-Hub-Signature-256": signatures.sign(SECRET, other.encode())},
                                  other.encode(), SECRET) == []
    pr = json.dumps({"action": "opened", "issue": {"number": 8, "pull_request": {}}}).encode()
    assert github().parse_webhook({**good, "X-Hub-Signature-256": signatures.sign(SECRET, pr)}, pr, SECRET) == []


def test_gitlab_checks_the_token_and_reads_issue_hooks_of_its_project() -> None:
    body = json.dumps({"object_kind": "issue", "object_attributes": {"iid": 3, "action": "update"},
                       "project": {"path_with_namespace": "acme/app"}}).encode()
    good = {"X-Gitlab-Event": "Issue Hook", "X-Gitlab-Token": SECRET}
    [event] = gitlab().parse_webhook(good, body, SECRET)
    assert (event.external_id, event.action) == ("3", "update")
    with pytest.raises(BadTicketSignature):
        gitlab().parse_webhook({**good, "X-Gitlab-Token": "nope"}, body, SECRET)
    with pytest.raises(BadTicketSignature):
        gitlab().parse_webhook({"X-Gitlab-Event": "Issue Hook"}, body, SECRET)
    assert gitlab().parse_webhook({**good, "X-Gitlab-Event": "Push Hook"}, body, SECRET) == []


def test_the_local_tracker_takes_optios_own_signed_form(tmp_path: Path) -> None:
    provider = LocalTicketProvider(Database(f"sqlite:///{tmp_path / 'x.db'}"),
                                   TicketSourceConfig(1, 1, "local", "", {}))
    body = json.dumps({"number": 4}).encode()
    ts = str(int(time.time()))
    good = {"X-Optio-Timestamp": ts, "X-Optio-Signature": signatures.sign(SECRET, ts.encode() + b"." + body)}
    assert [e.external_id for e in provider.parse_webhook(good, body, SECRET)] == ["4"]
    stale = str(int(time.time()) - 600)
    with pytest.raises(BadTicketSignature):
        provider.parse_webhook({"X-Optio-Timestamp": stale,
                                "X-Optio-Signature": signatures.sign(SECRET, stale.encode() + b"." + body)},
                               body, SECRET)
    with pytest.raises(BadTicketSignature):
        provider.parse_webhook({**good, "X-Optio-Signature": signatures.sign("other", ts.encode() + b"." + body)},
                               body, SECRET)
