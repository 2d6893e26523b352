"""Ticket intake on a real database against the fake GitHub, in-process: a verified webhook alone spawns the
task (no poller), a second delivery and a concurrent one spawn nothing more, a forged one is refused, and the
outbox keeps a tracker outage from losing or repeating a note."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from tests.support.fake_github import FakeGitHub
from tests.support.fake_github import Repo as GitHubRepo

from optio.errors import Invalid
from optio.services import blueprints as blueprint_service
from optio.services import ticket_intake
from optio.services import ticket_sources as source_service
from optio.services import triggers as trigger_service
from optio.services.secrets import SecretStore
from optio.store import migrate, workspaces
from optio.store.db import Database
from optio.store.models import Repo, RepoTask, TicketAction, TicketLink, TicketSource, Trigger
from optio.store.types import utcnow
from optio.tickets import net

TOKEN = "ghp_optio_token_7f3a9c"


@dataclass
class Env:
    db: Database
    vault: SecretStore
    fake: FakeGitHub
    repo: GitHubRepo
    source_id: int
    secret: str


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    db = Database(f"sqlite:///{tmp_path / 'optio.db'}")
    migrate.upgrade(db)
    with db.write() as session:
        workspaces.ensure_default(session)
        session.add(Repo(workspace_id=1, name="app", remote_url=str(tmp_path / "remote.git"), agent_type="script"))
    vault = SecretStore(db, tmp_path / "keys", None)
    vault.set(1, "GITHUB_ISSUES", TOKEN)
    net.set_allowlist(["127.0.0.1"])
    with FakeGitHub(tmp_path / "github") as fake:
        repo = fake.create_repo("acme", "tracker")
        blueprint_service.create(db, 1, {"name": "fix", "repo": "app", "title_template": "{{title}}",
                                         "prompt_template": "Fix {{number}}: {{body}}",
                                         "agent_config": {"command": "true"}})
        created = source_service.create(db, vault.keyring, 1, {
            "name": "gh", "kind": "github", "api_url": fake.api_url, "options": {"repo": "acme/tracker"},
            "credential_secret": "GITHUB_ISSUES"}, allowlist=["127.0.0.1"])
        trigger_service.create(db, vault.keyring, 1, {"type": "ticket", "target_type": "blueprint", "target": "fix",
                                                      "source": "gh", "label": "optio"})
        try:
            yield Env(db, vault, fake, repo, created.source.id, created.webhook_secret)
        finally:
            net.set_allowlist([])


def delivery(env: Env, number: int, *, secret: str | None = None) -> tuple[dict[str, str], bytes]:
    body = json.dumps({"action": "labeled", "issue": env.fake.issue(env.repo, env.repo.issues[number]),
                       "repository": env.fake.repository(env.repo)}).encode()
    key = (secret or env.secret).encode()
    return {"X-GitHub-Event": "issues", "X-Hub-Signature-256": "sha256=" + hmac.new(key, body, hashlib.sha256)
            .hexdigest()}, body


def tasks(env: Env) -> list[RepoTask]:
    with env.db.read() as session:
        return list(session.query(RepoTask).all())


def test_a_verified_webhook_spawns_the_task_once_and_a_forged_one_nothing(env: Env) -> None:
    plain = env.fake.create_issue(env.repo, "Question", labels=["question"])
    number = env.fake.create_issue(env.repo, "Crash", body="boom", labels=["optio"])
    with pytest.raises(ticket_intake.BadSignature):
        ticket_intake.receive(env.db, env.vault, env.vault.keyring, env.source_id,
                              *delivery(env, number, secret="whsec_wrong"))
    assert tasks(env) == []
    assert ticket_intake.receive(env.db, env.vault, env.vault.keyring, env.source_id,
                                 *delivery(env, plain)).spawned == []
    first = ticket_intake.receive(env.db, env.vault, env.vault.keyring, env.source_id, *delivery(env, number))
    assert len(first.spawned) == 1
    [task] = tasks(env)
    assert (task.title, task.prompt, task.ticket_ref) == ("Crash", f"Fix #{number}: boom", f"gh#{number}")
    again = ticket_intake.receive(env.db, env.vault, env.vault.keyring, env.source_id, *delivery(env, number))
    assert again.spawned == [] and len(tasks(env)) == 1
    assert ticket_intake.poll_source(env.db, source_service.provider_for(env.db, env.vault, _source(env)),
                                     env.source_id) == []


def _source(env: Env) -> TicketSource:
    return source_service.get(env.db, 1, env.source_id)


def test_racing_deliveries_of_one_ticket_spawn_one_task(env: Env) -> None:
    number = env.fake.create_issue(env.repo, "Crash", labels=["optio"])
    ticket = source_service.provider_for(env.db, env.vault, _source(env)).get(str(number))
    with env.db.read() as session:
        trigger_id = session.query(Trigger).one().id
    results: list[int | None] = []
    barrier = threading.Barrier(4)

    def spawn() -> None:
        barrier.wait()
        results.append(ticket_intake.spawn(env.db, trigger_id, env.source_id, ticket))

    threads = [threading.Thread(target=spawn) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len([r for r in results if r is not None]) == 1
    assert len(tasks(env)) == 1


def test_a_tracker_outage_delays_the_note_and_it_is_posted_once(env: Env) -> None:
    number = env.fake.create_issue(env.repo, "Crash", labels=["optio"])
    sync = ticket_intake.TicketSync(env.db, env.vault, public_url="http://optio.example", poll_interval_s=60,
                                    backoff_s=5, max_attempts=5)
    try:
        assert sync.poll_once() == 1
        env.fake.fail_5xx_until, env.fake.fail_5xx_paths = float("inf"), "/issues"
        assert sync.deliver_due(utcnow()) == 1
        with env.db.read() as session:
            [action] = session.query(TicketAction).all()
            assert (action.state, action.attempts) == ("pending", 1)
            assert action.last_error and "502" in action.last_error
            assert action.next_attempt_at > utcnow() + timedelta(seconds=3)
        assert sync.deliver_due(utcnow()) == 0  # backing off: nothing is due yet
        env.fake.fail_5xx_until = 0.0
        assert sync.deliver_due(utcnow() + timedelta(seconds=10)) == 1
        comments = [c["body"] for c in env.repo.issues[number]["comments"]]
        assert len(comments) == 1 and "http://optio.example/tasks/" in comments[0]
        with env.db.read() as session:
            assert session.query(TicketAction).one().state == "done"
            assert session.query(TicketLink).one().posted == ["picked_up"]
        assert sync.deliver_due(utcnow() + timedelta(hours=1)) == 0
    finally:
        sync.stop()


def test_key_rotation_reseals_the_sources_webhook_secret(env: Env) -> None:
    number = env.fake.create_issue(env.repo, "Crash", labels=["optio"])
    with env.db.read() as session:
        before = session.get(TicketSource, env.source_id).webhook_secret_ciphertext  # type: ignore[union-attr]
    rotation = env.vault.rotate_key()
    assert rotation.current_version not in rotation.previous_versions
    with env.db.read() as session:
        after = session.get(TicketSource, env.source_id).webhook_secret_ciphertext  # type: ignore[union-attr]
    assert after != before
    accepted = ticket_intake.receive(env.db, env.vault, env.vault.keyring, env.source_id, *delivery(env, number))
    assert len(accepted.spawned) == 1


@pytest.mark.parametrize(("kind", "data", "field"), [
    ("github", {"api_url": "http://127.0.0.1:9/api/v3"}, "options.repo"),
    ("gitlab", {"api_url": "http://127.0.0.1:9/api/v4"}, "options.project"),
    ("jira", {"api_url": "http://127.0.0.1:9", "options": {"project": "PROJ"}}, "options.email"),
    ("jira", {"options": {"project": "PROJ", "email": "bot@example.com"}}, "api_url"),
    ("notion", {"options": {"status_property": "Status"}}, "options.database_id"),
])
def test_a_source_missing_what_its_tracker_needs_is_refused_naming_the_field(
        env: Env, kind: str, data: dict[str, object], field: str) -> None:
    with pytest.raises(Invalid) as refused:
        source_service.create(env.db, env.vault.keyring, 1, {"name": f"bad-{kind}", "kind": kind,
                                                             "credential_secret": "GITHUB_ISSUES", **data},
                              allowlist=["127.0.0.1"])
    assert refused.value.field == field
    assert source_service.list_sources(env.db, 1)[-1].name == "gh"  # nothing was saved


def test_a_notion_source_may_name_its_data_source_instead_of_its_database(env: Env) -> None:
    created = source_service.create(env.db, env.vault.keyring, 1, {
        "name": "notes", "kind": "notion", "options": {"data_source_id": "ds-1"},
        "credential_secret": "GITHUB_ISSUES"}, allowlist=["127.0.0.1"])
    assert created.source.options == {"data_source_id": "ds-1"}
