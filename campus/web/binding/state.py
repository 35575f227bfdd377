"""What a device binding keeps in the session's own data, and so in its store record.

Two kinds of top-level keys, so that the session layer's merge of changed keys keeps
concurrent requests from undoing each other (a refresh that takes one challenge never
brings back another that a parallel refresh took):

- ``device_binding``: the binding, written once at registration: its DBSC session id, the
  algorithm and the public key (public: nothing here is a secret).
- ``device_challenge:<SHA-256 of the challenge>``: one per outstanding challenge, with what
  it is for and until when. Only the hash is kept, as for session ids: a copy of the store
  holds no challenge anyone could answer. Taking a challenge deletes its key.

Ending the session deletes the record, binding and challenges with it.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal

from campus.web.binding.proof import Proof

BINDING = "device_binding"
CHALLENGE_PREFIX = "device_challenge:"
#: At most this many challenges wait at once in one session; issuing another drops the oldest.
MAX_CHALLENGES = 4

Use = Literal["register", "refresh"]
SessionData = MutableMapping[str, Any]


@dataclass(frozen=True, slots=True)
class Binding:
    """A session's binding: the id the browser names it by, and the key that signs for it."""

    id: str
    alg: str
    jwk: dict[str, str]
    bound_at: int


def binding_of(session: Mapping[str, Any]) -> Binding | None:
    """The session's binding, or None (unbound, or a record no one should have written)."""
    raw = session.get(BINDING)
    if not isinstance(raw, dict):
        return None
    sid, alg, jwk, bound_at = raw.get("id"), raw.get("alg"), raw.get("jwk"), raw.get("at")
    if not (isinstance(sid, str) and isinstance(alg, str) and isinstance(bound_at, int)):
        return None
    if not isinstance(jwk, dict) or not all(isinstance(v, str) for v in jwk.values()):
        return None
    return Binding(sid, alg, jwk, bound_at)


def bind(session: SessionData, proof: Proof, now: float) -> Binding:
    """Keep the proof's key as the session's binding, under a new DBSC session id."""
    assert proof.jwk is not None, "only a registration proof carries a key"
    # "s" + hex: an sf-token, so the browser's bare Sec-Secure-Session-Id parses as one.
    binding = Binding("s" + secrets.token_hex(16), proof.alg, proof.jwk, int(now))
    session[BINDING] = {"id": binding.id, "alg": binding.alg, "jwk": binding.jwk, "at": int(now)}
    return binding


def forget(session: SessionData) -> None:
    """Remove any binding and challenge (a new login starts unbound)."""
    for key in [key for key in session if key == BINDING or key.startswith(CHALLENGE_PREFIX)]:
        del session[key]


def issue(session: SessionData, use: Use, *, now: float, lifetime: int) -> str:
    """A new single-use challenge for *use*, valid *lifetime* seconds; only its hash is kept."""
    waiting = sorted(
        (_until(session.get(key)), key) for key in session if key.startswith(CHALLENGE_PREFIX)
    )
    live = [key for until, key in waiting if until > now]
    expired = [key for until, key in waiting if until <= now]
    for key in expired + live[: max(0, len(live) + 1 - MAX_CHALLENGES)]:  # the oldest go
        del session[key]
    challenge = secrets.token_urlsafe(32)
    session[_key(challenge)] = {"use": use, "until": int(now) + lifetime}
    return challenge


def take(session: SessionData, challenge: str, use: Use, *, now: float) -> bool:
    """Whether *challenge* was issued for *use* and is still valid; it is used up either way."""
    key = _key(challenge)
    entry = session.get(key)
    if entry is None:
        return False
    del session[key]
    return isinstance(entry, dict) and entry.get("use") == use and _until(entry) > now


def awaiting_registration(session: Mapping[str, Any], *, now: float) -> bool:
    """Whether a registration challenge from this session's login is still valid."""
    return any(
        isinstance(entry, dict) and entry.get("use") == "register" and _until(entry) > now
        for key, entry in session.items()
        if key.startswith(CHALLENGE_PREFIX)
    )


def _key(challenge: str) -> str:
    return CHALLENGE_PREFIX + hashlib.sha256(challenge.encode()).hexdigest()


def _until(entry: Any) -> int:
    until = entry.get("until") if isinstance(entry, dict) else None
    return until if isinstance(until, int) else 0
