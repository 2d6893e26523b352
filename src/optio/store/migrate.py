"""Applies Alembic migrations on start so an upgrade never needs a separate step."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, inspect, text

from optio.store.db import Database
from optio.store.models import Base

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


# Held while migrating on PostgreSQL: replicas starting together migrate one after the other.
MIGRATION_LOCK_KEY = 0x6F7074696F  # "optio"


def upgrade(db: Database, *, new_from_models: bool = True) -> None:
    """Bring the schema to the head revision.

    A database with no tables at all is built from the models and stamped at head (Alembic's recipe for a
    database made from scratch) rather than walked through every migration: the same schema, which
    `tests/integration/test_migration_paths.py` holds on SQLite and PostgreSQL, for a fraction of the time each
    new install, and each test's fresh database, would spend replaying history. `new_from_models=False` replays
    the migrations anyway (what that test compares).
    """
    cfg = alembic_config(db.url)
    with db.engine.connect() as conn:
        if db.dialect == "postgresql":
            # Released when the migration's transaction commits, below.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        cfg.attributes["connection"] = conn
        if new_from_models and is_empty(conn):
            Base.metadata.create_all(conn)
            command.stamp(cfg, "head")
        else:
            command.upgrade(cfg, "head")
        conn.commit()


def is_empty(conn: Connection) -> bool:
    """No table at all in the connection's schema: a database nobody has set up yet."""
    return not inspect(conn).get_table_names()


def revision(url: str, message: str) -> None:
    """Autogenerate a migration (a development helper: `python -m optio.store.migrate "message"`)."""
    command.revision(alembic_config(url), message=message, autogenerate=True)


if __name__ == "__main__":
    import sys

    revision(sys.argv[2] if len(sys.argv) > 2 else "sqlite:///./.optio-dev.db", sys.argv[1])
