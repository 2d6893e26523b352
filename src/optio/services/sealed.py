"""Signing secrets sealed outside the secrets table (webhook triggers, notification receivers, ticket
sources): re-sealed with the secrets on key rotation, and their key versions kept while any still needs one."""

from __future__ import annotations

from optio.security import crypto
from optio.services import notifications as notify_service
from optio.services import triggers as trigger_service
from optio.store import notifications as notify_store
from optio.store import ticket_sources as source_store
from optio.store import triggers as trigger_store
from optio.store.session import Session


def reseal(session: Session, keyring: crypto.Keyring) -> tuple[int, set[int]]:
    """Re-encrypt every such secret with the keyring's current key, in the caller's transaction; returns how
    many changed and the key versions still in use (a value that did not open keeps its version)."""
    count, in_use = 0, set()
    rows = ([(t, trigger_service.aad_for(t.id)) for t in trigger_store.with_secrets(session)]
            + [(h, notify_service.aad_for(h.id)) for h in notify_store.with_secrets(session)])
    for row, aad in rows:
        token = row.secret_ciphertext
        assert token is not None
        try:
            new = crypto.reencrypt(token, keyring, aad=aad)
        except crypto.SecretDecryptError:
            try:
                in_use.add(crypto.key_version_of(token))
            except crypto.SecretDecryptError:
                pass
            continue
        if new != token:
            row.secret_ciphertext = new
            count += 1
        in_use.add(keyring.current_version)
    for source in source_store.with_secrets(session):
        token = source.webhook_secret_ciphertext
        assert token is not None
        try:
            new = crypto.reencrypt(token, keyring, aad=source_store.aad_for(source.id))
        except crypto.SecretDecryptError:
            try:
                in_use.add(crypto.key_version_of(token))
            except crypto.SecretDecryptError:
                pass
            continue
        if new != token:
            source.webhook_secret_ciphertext = new
            count += 1
        in_use.add(keyring.current_version)
    return count, in_use
