"""Applies Alembic migrations on start so an upgrade never needs a separate step."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from optio.store.db import Database

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


# Held while migrating on PostgreSQL: replicas starting together migrate one after the other.
MIGRATION_LOCK_KEY = 0x6F7074696F  # "optio"


def upgrade(db: Database) -> None:
    cfg = alembic_config(db.url)
    with db.engine.connect() as conn:
        if db.dialect == "postgresql":
            # Released when the migration's transaction commits, below.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        conn.commit()


def revision(url: str, message: str) -> None:
    """Autogenerate a migration (a development helper: `python -m optio.store.migrate "message"`)."""
    command.revision(alembic_config(url), message=message, autogenerate=True)


if __name__ == "__main__":
    import sys

    revision(sys.argv[2] if len(sys.argv) > 2 else "sqlite:///./.optio-dev.db", sys.argv[1])
