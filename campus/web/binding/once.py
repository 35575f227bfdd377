"""Single use across every request and process: a challenge is taken once, even at once.

Taking a challenge out of the session data is not enough on its own: two requests that
present the same proof at the same moment both load the session before either writes it
back, and both would find the challenge. So the first use is also claimed in the store's
attempt counters — the atomic "at most N within a window" primitive the login throttle
uses, one Lua script on Redis and one dict operation in memory — with a limit of one: of
any number of concurrent claims on one challenge, exactly one wins.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from tornado.web import HTTPError

from campus.session import StoreUnavailable


async def first_use(store: Any, challenge: str, *, lifetime: int) -> bool:
    """Whether this request is the first, in any process, to use *challenge*.

    A store without attempt counters (not one of campus's) cannot tell: then the session
    data alone decides, as before. Store trouble is a 503, as anywhere a session is needed.
    """
    reserve = getattr(store, "reserve", None)
    if not callable(reserve):
        return True
    key = "device-binding:" + hashlib.sha256(challenge.encode()).hexdigest()
    try:
        wait = await reserve([key], secrets.token_hex(8), window=lifetime, limit=1)
    except StoreUnavailable as exc:
        raise HTTPError(503, "session store unavailable: %s", exc) from None
    return float(wait) == 0.0
