"""Optio security building blocks, each independent of the rest of Optio.

- ``crypto``: secrets encrypted at rest (AES-256-GCM, versioned keys, rotation)
- ``redact``: masking secret values and credential shapes in logs and events
- ``ssrf``: refusing user-supplied URLs that point at internal addresses
- ``signatures``: webhook HMAC signatures and shared tokens
- ``tokens``: API keys, password hashing, session and CSRF tokens

Import the submodule you need; this package deliberately re-exports nothing so
that importing one does not load the dependencies of all.
"""
