"""The transaction type the store's functions take, for callers that must not import SQLAlchemy.

A handler or route owns its transaction (`Database.read()`/`write()`) and passes it to the store.
"""

from __future__ import annotations

from sqlalchemy.orm import Session as Session

__all__ = ["Session"]
