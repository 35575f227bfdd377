"""The session cookie: what it looks like (one policy) and how it is signed (several secrets).

Every attribute comes from :class:`CookiePolicy`, so setting and clearing can never drift
apart (a cookie is only cleared by one with the same name, path and domain) and Tornado's
own defaults (no HttpOnly, 30 days) never apply.

Signing is Tornado's signed value, version 2 (HMAC-SHA256). Several secrets may verify; the
first signs. Tornado picks the verifying secret by a "key version" carried in the cookie; we
derive that number from the secret itself, so reordering or retiring secrets never makes a
cookie point at the wrong one.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tornado.web import create_signed_value, decode_signed_value

from campus.session.store import Clock, is_session_id

#: Our cookies are ~120 bytes; anything much longer is not ours and is not worth an HMAC.
MAX_COOKIE_LENGTH = 512
#: How many verified cookie values to remember (a hit skips the parse and the HMAC).
VERIFIED_CACHE_SIZE = 4096


#: How many values of the session cookie one request may have tried (each may cost a store
#: read); a browser sends more than one only when another path or domain set one too.
MAX_COOKIE_VALUES = 4


def cookie_values(headers: Sequence[str], name: str) -> list[str]:
    """The values of cookie *name* in a request's ``Cookie`` headers, in order, unquoted.

    A client may send several ``Cookie`` headers (HTTP/2 proxies split them, one per cookie);
    Tornado joins repeated headers with ",", which is not a cookie separator, so each header
    is read on its own (``request.headers.get_list("Cookie")``). A cookie set again for
    another path or a parent domain arrives as a second value of the same name, and browsers
    put the more specific one first: a stale or planted one may come before the good one, so
    every value counts, not only the first (at most :data:`MAX_COOKIE_VALUES`). Tornado's
    ``get_cookie`` parses every cookie on each request; the session cookie is the only one
    we need, and anything unusual in it fails verification anyway.
    """
    values: list[str] = []
    for header in headers:
        if name not in header:
            continue
        for part in header.split(";"):
            key, sep, value = part.partition("=")
            if sep and key.strip() == name:
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                values.append(value)
                if len(values) == MAX_COOKIE_VALUES:
                    return values
    return values


def cookie_from_headers(headers: Sequence[str], name: str) -> str | None:
    """The first value of cookie *name* in a request's ``Cookie`` headers, or None."""
    values = cookie_values(headers, name)
    return values[0] if values else None


@dataclass(frozen=True, slots=True)
class CookiePolicy:
    """The session cookie's attributes. ``secure=None`` means: follow the request's scheme;
    ``max_age=None``: follow the session's idle timeout."""

    name: str = "campus.sid"
    max_age: int | None = None
    path: str = "/"
    domain: str = ""
    same_site: Literal["strict", "lax", "none"] = "lax"
    secure: bool | None = None
    http_only: bool = True

    def attributes(self, *, https: bool) -> dict[str, Any]:
        """Keyword arguments for ``RequestHandler.set_cookie`` (except the value and expiry)."""
        return {
            "path": self.path,
            "domain": self.domain or None,
            "httponly": self.http_only,
            "secure": https if self.secure is None else self.secure,
            "samesite": self.same_site.capitalize(),
        }


def key_version(secret: str) -> int:
    """A stable number naming *secret* inside signed values (32 bits of its hash)."""
    return int.from_bytes(hashlib.sha256(b"campus.key-version:" + secret.encode()).digest()[:4])


class CookieSigner:
    """Signs session ids with the first secret; verifies with any of them."""

    def __init__(self, secrets: Sequence[str], *, clock: Clock = time.time) -> None:
        if not secrets or not all(secrets):
            raise ValueError("at least one non-empty secret is needed")
        self._keys = {key_version(secret): secret for secret in secrets}
        self._signing_version = key_version(secrets[0])
        self._clock = clock
        # Cookie value -> (id, signed at), for values that verified with one of our secrets:
        # browsers send the same value on every request until it is re-signed.
        self._verified: dict[str, tuple[str, str, float]] = {}

    def sign(self, name: str, sid: str) -> str:
        return create_signed_value(
            self._keys,
            name,
            sid,
            version=2,
            clock=self._clock,
            key_version=self._signing_version,
        ).decode()

    def verify(self, name: str, value: str | None, *, max_age: float) -> tuple[str, float] | None:
        """The session id and the time it was signed, or None for anything not ours.

        Tampered, truncated, foreign-secret, retired-secret, expired and garbage values all
        come back as None: an unusable cookie means "no session", never an error.
        """
        if not value or len(value) > MAX_COOKIE_LENGTH:
            return None
        known = self._verified.get(value)
        if known is not None and known[0] == name:
            _, sid, signed_at = known
            return (sid, signed_at) if self._clock() - signed_at <= max_age else None
        try:
            raw = decode_signed_value(
                self._keys,
                name,
                value,
                max_age_days=max_age / 86400,
                clock=self._clock,
                min_version=2,
            )
            sid = raw.decode("ascii") if raw is not None else ""
            # Verified, so the layout is ours: 2|1:<kv>|<n>:<timestamp>|<name>|<value>|<sig>
            signed_at = float(value.split("|", 3)[2].split(":", 1)[1])
        except (ValueError, TypeError, IndexError, UnicodeDecodeError):
            # decode_signed_value returns None for what it recognises as bad; a few malformed
            # shapes (e.g. a bad length prefix) raise instead. Either way: not our cookie.
            return None
        if not is_session_id(sid):
            return None
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            del self._verified[next(iter(self._verified))]  # the oldest entry
        self._verified[value] = (name, sid, signed_at)
        return sid, signed_at
