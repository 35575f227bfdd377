"""The long-lived objects handlers use, built once by the server and passed to make_app."""

from __future__ import annotations

from dataclasses import dataclass

from campus.config import Config
from campus.express import ExpressSessions
from campus.metrics import Metrics
from campus.session import SessionManager
from campus.users import UserDirectory


@dataclass(frozen=True, slots=True)
class Services:
    config: Config
    sessions: SessionManager
    users: UserDirectory
    express: ExpressSessions | None = None  # the Express cut-over; None while it is off
    metrics: Metrics | None = None  # GET /metrics and what feeds it; None when [metrics] is off
