"""A new database is built from the models and stamped at head instead of replaying every migration
(`optio.store.migrate.upgrade`): both ways must give the same schema, on SQLite and on a real PostgreSQL.

Compared with Alembic's own autogenerate comparison (types included) and table by table as the database reflects
it, server defaults included: a column that a migration gives a server default the model lacks shows up here
rather than as an insert failing on one path only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from optio.store import migrate
from optio.store.db import Database
from optio.store.models import Base, Workspace


def differences(db: Database) -> list[Any]:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def revision(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head() -> str | None:
    return ScriptDirectory.from_config(migrate.alembic_config("sqlite://")).get_current_head()


def schema(db: Database) -> dict[str, Any]:
    """Tables with their columns (name, type, nullability, default), indexes and unique constraints."""
    with db.engine.connect() as conn:
        insp = inspect(conn)
        out: dict[str, Any] = {}
        for table in sorted(insp.get_table_names()):
            out[table] = {
                "columns": sorted((c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                                  for c in insp.get_columns(table)),
                "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                                  for i in insp.get_indexes(table)),
                "uniques": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table)),
                "pk": tuple(insp.get_pk_constraint(table)["constrained_columns"]),
                "fks": sorted((tuple(f["constrained_columns"]), f["referred_table"])
                              for f in insp.get_foreign_keys(table)),
            }
        return out


def both_ways(url_for: Any) -> tuple[Database, Database]:
    replayed = Database(url_for("replayed"))
    migrate.upgrade(replayed, new_from_models=False)
    built = Database(url_for("built"))
    migrate.upgrade(built)
    return replayed, built


def check(replayed: Database, built: Database) -> None:
    assert differences(replayed) == []
    assert differences(built) == []
    assert schema(built) == schema(replayed)
    assert revision(built) == revision(replayed) == head()
    # Built at head, the next start has nothing to do, and the database works like any other.
    migrate.upgrade(built)
    assert revision(built) == head()
    with built.write() as session:
        session.add(Workspace(slug="w", name="w"))
    with built.read() as session:
        assert session.execute(text("SELECT count(*) FROM workspaces WHERE slug = 'w'")).scalar_one() == 1


def test_sqlite_built_from_the_models_equals_the_migrated_schema(tmp_path: Path) -> None:
    replayed, built = both_ways(lambda name: f"sqlite:///{tmp_path / name}.db")
    check(replayed, built)


def test_postgres_built_from_the_models_equals_the_migrated_schema(pg_url: str) -> None:
    from tests.support.postgres import database_on

    with database_on(pg_url, prefix="optio_paths") as other:
        replayed = Database(other)
        migrate.upgrade(replayed, new_from_models=False)
        built = Database(pg_url)
        migrate.upgrade(built)
        try:
            check(replayed, built)
        finally:
            replayed.dispose()
            built.dispose()


def test_a_database_with_tables_but_no_revision_is_migrated_not_rebuilt(tmp_path: Path) -> None:
    """Only a database with no tables at all is built from the models; anything else goes through Alembic."""
    db = Database(f"sqlite:///{tmp_path / 'half.db'}")
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE workspaces (id INTEGER PRIMARY KEY)"))
    with pytest.raises(Exception, match="workspaces"):
        migrate.upgrade(db)
