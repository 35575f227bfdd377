"""Handles: names for sessions that a user may see and send back ("Your sessions").

A handle is an HMAC-SHA256 of the store's ref (the SHA-256 of the session id) under a key
derived from the signing secret. So it is stable for the session's life, across requests,
processes and restarts; it reveals neither the id, the cookie nor the store key (the ref
itself never leaves the server); and without the secret nobody can compute one. Rotating
the signing secret (a new first secret) changes every handle, which only matters to a page
that was open during the rotation: its next click answers 404.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

_PURPOSE = b"campus.session.handle/v1"


class SessionHandles:
    def __init__(self, secret: str) -> None:
        # A key of its own, so a handle is never a value the cookie signer would produce.
        self._key = hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).digest()

    def handle(self, ref: str) -> str:
        """The handle of a session, from its store ref: 32 URL-safe characters (192 bits)."""
        digest = hmac.new(self._key, ref.encode(), hashlib.sha256).digest()[:24]
        return base64.urlsafe_b64encode(digest).decode()

    def matches(self, handle: str, ref: str) -> bool:
        """Whether ``handle`` names the session with this ref (a constant-time comparison)."""
        return hmac.compare_digest(self.handle(ref).encode(), handle.encode("utf-8", "replace"))
