"""Device cookies: a browser that has signed in as an email is trusted for that email.

OWASP's "Slow Down Online Guessing Attacks with Device Cookies": without them, anyone can lock
a user out by failing as that user (the per-email count), and five failures from a campus NAT
lock out everyone behind it (the per-address count). A successful login gives the browser a
long-lived cookie bound to the email; a login for that email presenting it is counted on the
device's own counter only (campus.accounts.throttle), so the lock others caused never refuses
it. The cookie survives logout (logout's Clear-Site-Data spares cookies).

The value is the session manager's signed value (its secrets and their rotation) of a random
device id, under a name that carries a digest of the email: a cookie verifies for the email it
was issued for and no other, and a forged, altered or expired one is no cookie at all.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

from campus.session import SessionManager
from campus.session.cookie import cookie_values
from campus.session.store import new_session_id

#: Seconds a device stays trusted after its last successful login (each renews it).
LIFETIME = 180 * 86400
SUFFIX = ".device"
#: Values of the cookie looked at per request (a browser sends one).
MAX_VALUES = 4


class DeviceCookies:
    """The device cookie of one session manager's site: its name, its value, its check."""

    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager
        self.name = manager.cookie.name + SUFFIX  # "__Host-" prefixed if the session's is

    def device(self, cookie_headers: Sequence[str], email_key: str) -> str | None:
        """The id of the device whose cookie in these headers was issued for *email_key*."""
        signer = self.manager.signer
        # A few at most: a request stuffed with hundreds must not cost hundreds of HMACs.
        for value in cookie_values(cookie_headers, self.name)[:MAX_VALUES]:
            verified = signer.verify(_signed_name(self.name, email_key), value, max_age=LIFETIME)
            if verified is not None:
                return verified[0]
        return None

    def issue(self, email_key: str) -> str:
        """A new cookie value for a browser that has just signed in as *email_key*."""
        return self.manager.signer.sign(_signed_name(self.name, email_key), new_session_id())


def _signed_name(name: str, email_key: str) -> str:
    """The name a device cookie is signed under: bound to the email, without spelling it."""
    digest = hashlib.sha256(b"campus.device:" + email_key.encode()).digest()[:12]
    return f"{name}:{base64.urlsafe_b64encode(digest).decode()}"
