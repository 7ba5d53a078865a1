"""Signed summary-page links: ``/meeting/<conversationId>?s=<HMAC-SHA256(secret, conversationId)>``.

The secret is 32 random bytes kept in ``<runtime_dir>/page-secret`` (0600, created on first start and
reused, so links stay valid across restarts of the daemon). A link is the credential: whoever has it
may read that one conversation, and no other id can be derived from it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

SECRET_FILE = "page-secret"


def load_secret(runtime_dir: Path) -> bytes:
    """The page secret from the runtime directory; written 0600 (never wider) when missing."""
    path = runtime_dir / SECRET_FILE
    try:
        text = path.read_text().strip()
        if len(text) >= 64:
            return bytes.fromhex(text)
    except FileNotFoundError:
        pass
    except ValueError:
        pass  # a damaged file is replaced: old links stop working, new ones do
    fresh = secrets.token_hex(32)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(fresh + "\n")
    os.replace(tmp, path)
    return bytes.fromhex(fresh)


class PageLinks:
    """Makes and checks the page URL of a conversation."""

    def __init__(self, secret: bytes, base_url: str) -> None:
        self._secret = secret
        self.base_url = base_url.rstrip("/")

    def signature(self, conversation_id: str) -> str:
        return hmac.new(self._secret, conversation_id.encode(), hashlib.sha256).hexdigest()

    def valid(self, conversation_id: str, signature: str | None) -> bool:
        if not signature:
            return False
        return hmac.compare_digest(self.signature(conversation_id).encode(), signature.encode(errors="replace"))

    def url(self, conversation_id: str) -> str:
        return f"{self.base_url}/meeting/{conversation_id}?s={self.signature(conversation_id)}"


# The daemon's page links while its page server runs (symbld.web.server.start installs them). The
# session's outgoing filter reads them to put summaryUrl in conversation_completed.
_installed: PageLinks | None = None


def install(links: PageLinks | None) -> None:
    global _installed
    _installed = links


def summary_url(conversation_id: str) -> str | None:
    links = _installed
    return links.url(conversation_id) if links is not None and conversation_id else None
