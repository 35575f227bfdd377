"""The bound cookie (short-lived, renewed by refresh) and the session instructions naming it.

The bound cookie says "this session proved possession of its key within the last few
minutes". Its value is the session manager's own signed value (the session secrets, their
rotation, its verification cache) of a digest of the session id under a name of its own, so
it is worth nothing for another session, and a session cookie is never mistaken for it. It
carries the session cookie's attributes (path, domain, SameSite, Secure, HttpOnly), which the
instructions repeat to the browser: a browser only renews a cookie whose attributes match.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from campus.session import SessionManager

#: Seconds a bound cookie is good for; a browser renews it before it runs out.
LIFETIME = 600
#: A browser counts the lifetime from when the cookie arrived; allow for the trip.
GRACE = 30
SUFFIX = ".bound"


class BoundCookie:
    """The bound cookie of one session manager's sessions."""

    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager
        self.name = manager.cookie.name + SUFFIX

    def value(self, sid: str) -> str:
        return self.manager.signer.sign(self.name, _digest(sid))

    def proves(self, values: list[str], sid: str) -> bool:
        """Whether one of the request's values is a live bound cookie of session *sid*."""
        digest = _digest(sid)
        for value in values:
            verified = self.manager.signer.verify(self.name, value, max_age=LIFETIME + GRACE)
            if verified is not None and hmac.compare_digest(verified[0], digest):
                return True
        return False

    def attributes(self, *, https: bool) -> dict[str, Any]:
        """``set_cookie`` keyword arguments: the session cookie's attributes."""
        return self.manager.cookie.attributes(https=https)

    def attribute_text(self, *, https: bool) -> str:
        """The same attributes as a Set-Cookie tail, for the session instructions."""
        attributes = self.attributes(https=https)
        parts = [f"Path={attributes['path']}"]
        if attributes["domain"]:
            parts.append(f"Domain={attributes['domain']}")
        if attributes["secure"]:
            parts.append("Secure")
        if attributes["httponly"]:
            parts.append("HttpOnly")
        parts.append(f"SameSite={attributes['samesite']}")
        return "; ".join(parts)


def instructions(
    binding_id: str, *, host: str, refresh_path: str, scope: str, cookie: str, attributes: str
) -> dict[str, Any]:
    """The session instructions (registration and refresh answers): which cookie the browser
    keeps fresh, for which requests, and where it renews it.

    The scope is this origin's *scope* path and below, not the refresh endpoint's directory:
    the static files and the SPA shell never need the session, so a refresh never holds
    them up. Rules are read last first (the draft and Chrome agree); Chrome takes a rule of
    an origin-scoped session only when its domain is exactly the origin's host.
    """
    rules = [
        {"type": "exclude", "domain": host, "path": "/"},
        {"type": "include", "domain": host, "path": scope},
        {"type": "exclude", "domain": host, "path": refresh_path.rsplit("/", 1)[0]},
    ]
    return {
        "session_identifier": binding_id,
        "refresh_url": refresh_path,
        "scope": {"include_site": False, "scope_specification": rules},
        "credentials": [{"type": "cookie", "name": cookie, "attributes": attributes}],
    }


def _digest(sid: str) -> str:
    """43 URL-safe characters (the shape of a session id, which the signer checks)."""
    digest = hashlib.sha256(b"campus.device-binding.cookie:" + sid.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
