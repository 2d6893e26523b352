"""The database session as the layers above the store name it, so they need not import SQLAlchemy."""

from __future__ import annotations

from sqlalchemy.orm import Session

__all__ = ["Session"]
