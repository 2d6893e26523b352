"""A vendor review agent's `review.json`: read safely from its checkout, validated, turned into the domain's report.

The file is written by an agent in a directory it controls, so it is read like untrusted input: never
through a link, never from a FIFO, at most `REVIEW_FILE_MAX_BYTES`, and validated field by field, so a
bad file is a clear reason for a failed attempt rather than an exception or a silent approval.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from optio.domain.reconcile.review import ReviewComment, ReviewReport

REVIEW_FILE_MAX_BYTES = 256 * 1024
MAX_LINE_COMMENTS = 200


class LineCommentIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    path: str = Field(min_length=1, max_length=1000)
    line: int = Field(ge=1)
    body: str = Field(min_length=1, max_length=20_000)


class ReviewFileIn(BaseModel):
    """The shape the review prompt asks for (see `optio.domain.prompts.VENDOR_REVIEW_INSTRUCTIONS`)."""

    model_config = ConfigDict(extra="ignore")

    verdict: Literal["approve", "request_changes"]
    summary: str = Field(max_length=60_000)
    comments: list[LineCommentIn] = Field(default_factory=list, max_length=MAX_LINE_COMMENTS)


def load_review_file(path: Path) -> tuple[ReviewReport | None, str | None]:
    """The validated report, or None and why there is none (worded for the run's error)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None, f"{path.name} was not written"
    except OSError as exc:
        return None, f"{path.name} could not be opened ({exc.strerror or exc})"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None, f"{path.name} is not a regular file"
        data = os.read(fd, REVIEW_FILE_MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > REVIEW_FILE_MAX_BYTES:
        return None, f"{path.name} is larger than {REVIEW_FILE_MAX_BYTES} bytes"
    try:
        parsed = ReviewFileIn.model_validate(json.loads(data.decode("utf-8")))
    except (UnicodeDecodeError, ValueError) as exc:
        return None, f"{path.name} is not valid: {_why(exc)}"
    comments = tuple(ReviewComment(path=c.path, line=c.line, body=c.body) for c in parsed.comments)
    return ReviewReport(verdict=parsed.verdict, summary=parsed.summary, comments=comments), None


def _why(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        return f"{where}: {first['msg']} ({exc.error_count()} problem{'s' * (exc.error_count() != 1)})"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    return f"not JSON ({exc})"
