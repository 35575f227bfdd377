"""A server-side session layer for Tornado. It imports nothing else from campus.

    store = MemoryStore(max_sessions=100_000)
    sessions = SessionManager(store, secrets=["at least 32 characters, from config"])
    app = tornado.web.Application(routes, session_manager=sessions)

and mix :class:`SessionMixin` into a ``RequestHandler``: ``self.session`` is loaded before
the handler runs and stored, when it changed, before the response goes out. In Redis:
``RedisStore.from_url(url)`` from :mod:`campus.session.stores.redis`. A store of your own
implements :class:`SessionStore` (and, optionally, :class:`UserSessions`).
"""

from campus.session.cookie import CookiePolicy, CookieSigner
from campus.session.manager import SessionManager, SessionPolicy
from campus.session.mixin import SessionMixin
from campus.session.session import Session
from campus.session.store import SessionStore, StoreUnavailable, UserSessions

__version__ = "0.2.0"

__all__ = [
    "CookiePolicy",
    "CookieSigner",
    "Session",
    "SessionManager",
    "SessionMixin",
    "SessionPolicy",
    "SessionStore",
    "StoreUnavailable",
    "UserSessions",
    "__version__",
]
