"""Rows people refer to by id or by name (jobs, repos): one lookup and one unique insert for all."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from optio.errors import Conflict, NotFound
from optio.store.db import Database
from optio.store.models import Blueprint, Job, Repo

T = TypeVar("T", Job, Repo, Blueprint)
MAX_ID_DIGITS = 18  # larger numbers cannot be a row id on any backend; treat them as names


def looks_like_id(ref: str | int) -> bool:
    text = str(ref)
    return isinstance(ref, int) or (text.isascii() and text.isdigit() and len(text) <= MAX_ID_DIGITS)


def find_by_ref(session: Session, model: type[T], workspace_id: int, ref: str | int, noun: str) -> T:
    """By id when `ref` looks like one, else (or when no such id) by name; always within the workspace."""
    q = select(model).where(model.workspace_id == workspace_id)
    found: T | None = None
    if looks_like_id(ref):
        found = session.scalar(q.where(model.id == int(ref)))
    if found is None:
        found = session.scalar(q.where(model.name == str(ref)))
    if found is None:
        raise NotFound(f"{noun} {ref!r} not found")
    return found


def insert_unique(db: Database, row: T, noun: str) -> T:
    """Insert a row whose name is unique per workspace; a clash is a 409 naming the name."""
    try:
        with db.write() as session:
            session.add(row)
    except IntegrityError:
        raise Conflict(f"a {noun} named {row.name!r} already exists", field="name") from None
    return row
