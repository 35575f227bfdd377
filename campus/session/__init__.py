"""A server-side session layer for Tornado. It imports nothing else from campus."""

from campus.session.cookie import CookiePolicy, CookieSigner
from campus.session.manager import SessionManager, SessionPolicy
from campus.session.mixin import SessionMixin
from campus.session.session import Session
from campus.session.store import SessionStore, StoreUnavailable

__all__ = [
    "CookiePolicy",
    "CookieSigner",
    "Session",
    "SessionManager",
    "SessionMixin",
    "SessionPolicy",
    "SessionStore",
    "StoreUnavailable",
]
