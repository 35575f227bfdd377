"""The DBSC header fields, parsed and serialized as RFC 9651 structured fields (http-sfv).

Responses: ``Secure-Session-Registration`` (a list of inner lists of algorithm tokens, with
``path`` and ``challenge``) and ``Secure-Session-Challenge`` (a string with an ``id``).
Requests: ``Secure-Session-Response`` and ``Sec-Secure-Session-Id`` (strings) and
``Secure-Session-Skipped`` (a list of tokens).

The draft makes the two request strings sf-strings (quoted); Chrome sends both bare. A bare
JWT, and a binding id as campus makes them, are sf-tokens, so reading either item type takes
both spellings through the same parser.
"""

from __future__ import annotations

from collections.abc import Iterable

from http_sfv.item import InnerList, Item
from http_sfv.list import List
from http_sfv.types import Token

REGISTRATION = "Secure-Session-Registration"
CHALLENGE = "Secure-Session-Challenge"
RESPONSE = "Secure-Session-Response"
SESSION_ID = "Sec-Secure-Session-Id"
SKIPPED = "Secure-Session-Skipped"

#: The reasons the draft defines for a skipped refresh; anything else is counted as "other".
SKIPPED_REASONS = frozenset({"unreachable", "server_error", "quota_exceeded"})
#: A request header longer than this is not one of ours (the longest, a proof, is ~1 KiB).
MAX_FIELD_LENGTH = 8192


def registration(algorithms: Iterable[str], path: str, challenge: str) -> str:
    """``(ES256 RS256);path="...";challenge="..."``."""
    entry = InnerList([Token(alg) for alg in algorithms])
    entry.params["path"] = path
    entry.params["challenge"] = challenge
    return str(List([entry]))


def challenge(value: str, session_id: str) -> str:
    """``"<challenge>";id="<session id>"``."""
    item = Item(value)
    item.params["id"] = session_id
    return str(item)


def text(value: str | None) -> str | None:
    """The string an sf-string (or a bare sf-token) carries; None when absent or anything else."""
    if value is None or len(value) > MAX_FIELD_LENGTH:
        return None
    item = Item()
    try:
        item.parse(value.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return None
    return str(item.value) if isinstance(item.value, str) and item.value else None


def skipped(value: str | None) -> list[str]:
    """The reasons in a ``Secure-Session-Skipped`` list, one per skipped session ("other" for
    a token the draft does not define, or a list that does not parse)."""
    if not value:
        return []
    members = List()
    try:
        members.parse(value[:MAX_FIELD_LENGTH].encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return ["other"]
    reasons = []
    for member in members:
        token = member.value if isinstance(member, Item) else None
        reasons.append(token if isinstance(token, Token) and token in SKIPPED_REASONS else "other")
    return reasons
