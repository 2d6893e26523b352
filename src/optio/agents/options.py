"""The agent config keys every vendor adapter understands, resolved once per request.

Config keys (``request.config``; request fields of the same meaning win when set):

``model``            model name passed to the CLI's model flag
``max_turns``        cap on agentic turns, where the CLI has one
``base_url``         model API endpoint, so a self-hosted server can stand behind the CLI
``auth``             ``"api_key"`` (default) or ``"oauth"`` (subscription / login token)
``api_key_secret``   NAME of the env var / Optio secret holding the API key (vendor default)
``oauth_token_secret`` NAME of the secret holding the OAuth token, where the vendor has one
``permission_mode``  how much the agent may do unasked (vendor-specific values, sensible default)
``extra_args``       list of extra CLI arguments appended verbatim
``reasoning_effort`` how hard the model thinks, where the CLI has a setting (see ``optio.agents.models``)
``vendors``          per-vendor ``model``/``reasoning_effort``/``max_turns``/``base_url``, applied over the
                     shared keys for a run of that vendor (``optio.agents.models.for_vendor``)
``require_secret``   false to allow running without the credential (e.g. a keyless local server)

Secrets reach the CLI only through its environment, never its argv.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from optio.agents.base import AgentConfigError, AgentRequest


@dataclass(frozen=True)
class AdapterOptions:
    model: str | None
    max_turns: int | None
    base_url: str | None
    auth: str
    secret_name: str
    secret_value: str | None
    permission_mode: str | None
    extra_args: tuple[str, ...]
    reasoning_effort: str | None = None


def resolve_options(
    request: AgentRequest,
    *,
    vendor: str,
    default_api_key_secret: str,
    default_oauth_secret: str | None = None,
) -> AdapterOptions:
    config: Mapping[str, Any] = request.config or {}
    auth = str(config.get("auth") or "api_key")
    if auth not in ("api_key", "oauth"):
        raise AgentConfigError(f"{vendor}: auth must be 'api_key' or 'oauth', not {auth!r}")
    if auth == "oauth" and default_oauth_secret is None:
        raise AgentConfigError(f"{vendor}: this vendor has no OAuth token mode; use auth 'api_key'")
    secret_name = configured_secret_name(
        config, auth=auth, default_api_key_secret=default_api_key_secret, default_oauth_secret=default_oauth_secret
    )
    secret_value = request.env.get(secret_name) or None
    if secret_value is None and config.get("require_secret", True):
        raise AgentConfigError(
            f"{vendor}: the secret {secret_name} is not set; add it to the repo or agent secrets"
        )
    return AdapterOptions(
        model=request.model or _opt_str(config.get("model")),
        max_turns=request.max_turns if request.max_turns is not None else _opt_int(config, "max_turns"),
        base_url=request.base_url or _opt_str(config.get("base_url")),
        auth=auth,
        secret_name=secret_name,
        secret_value=secret_value,
        permission_mode=_opt_str(config.get("permission_mode")),
        extra_args=_extra_args(config, vendor),
        reasoning_effort=_opt_str(config.get("reasoning_effort")),
    )


def configured_secret_name(
    config: Mapping[str, Any],
    *,
    auth: str,
    default_api_key_secret: str,
    default_oauth_secret: str | None = None,
) -> str:
    """The secret a config names for its auth mode; a vendor without a token mode always uses its API key."""
    if auth == "oauth" and default_oauth_secret is not None:
        return str(config.get("oauth_token_secret") or default_oauth_secret)
    return str(config.get("api_key_secret") or default_api_key_secret)


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _opt_int(config: Mapping[str, Any], key: str) -> int | None:
    value = config.get(key)
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise AgentConfigError(f"{key} must be an integer, not {value!r}") from None
    if number < 1:
        raise AgentConfigError(f"{key} must be at least 1")
    return number


def _extra_args(config: Mapping[str, Any], vendor: str) -> tuple[str, ...]:
    value = config.get("extra_args") or ()
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise AgentConfigError(f"{vendor}: extra_args must be a list of strings")
    return tuple(value)


def base_env(request: AgentRequest) -> dict[str, str]:
    """The run's environment as given, to which an adapter adds its vendor's variables."""
    return dict(request.env)
