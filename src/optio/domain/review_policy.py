"""How a task's pull request is reviewed and merged: the repo's settings, with what the task's blueprint
replaces. A blueprint that spawns dependency bumps can merge them without a person while hand-made tasks of
the same repo still wait for an approval, or turn the repo's review agent off (or use another one) for its tasks.

The overrides are a task's `review_settings`: any of `require_approval`, `auto_merge`, `review_agent` (false: no
review agent), `review_agent_type`, `review_agent_config` (merged into the repo's when the agent type is the
repo's), `review_prompt`. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SETTINGS = ("require_approval", "auto_merge", "review_agent", "review_agent_type", "review_agent_config",
            "review_prompt")


@dataclass(frozen=True)
class ReviewPolicy:
    require_approval: bool
    auto_merge: bool
    review_agent_type: str | None
    review_agent_config: dict[str, Any] = field(default_factory=dict)
    review_prompt: str = ""


def effective(repo: ReviewPolicy, overrides: Mapping[str, Any] | None) -> ReviewPolicy:
    """The repo's policy with the task's overrides applied."""
    o = dict(overrides or {})
    agent_type = repo.review_agent_type
    config = dict(repo.review_agent_config)
    if o.get("review_agent") is False:
        agent_type, config = None, {}
    else:
        wanted = o.get("review_agent_type")
        if wanted and wanted != agent_type:
            agent_type, config = wanted, {}
        if agent_type is not None:
            config.update(o.get("review_agent_config") or {})
    return ReviewPolicy(
        require_approval=bool(o.get("require_approval", repo.require_approval)),
        auto_merge=bool(o.get("auto_merge", repo.auto_merge)),
        review_agent_type=agent_type,
        review_agent_config=config,
        review_prompt=o["review_prompt"] if o.get("review_prompt") is not None else repo.review_prompt,
    )
