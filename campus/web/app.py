"""make_app: the routes, wired to already-built services. No I/O happens here."""

from __future__ import annotations

import os
from functools import partial
from typing import Any

import tornado.web
from tornado.httputil import HTTPServerRequest
from tornado.routing import PathMatches, Rule

from campus.http.clients import client_address
from campus.observability.accesslog import RequestLog
from campus.observability.requestid import Application
from campus.web.handlers.auth import LoginHandler, LogoutHandler, MeHandler
from campus.web.handlers.base import NotFoundHandler
from campus.web.handlers.binding import RefreshHandler, RegisterHandler
from campus.web.handlers.health import HealthHandler
from campus.web.handlers.metrics import MetricsHandler
from campus.web.handlers.sessions import EndOthersHandler, SessionHandleHandler, SessionsHandler
from campus.web.handlers.spa import FrontendHandler
from campus.web.services import Services


class MethodPath(PathMatches):
    """A path that routes every method but *exclude*; those fall through to the next rule.

    That is how ``GET /login`` reaches the SPA shell (a client-side route) while
    ``POST /login`` — and a wrong method, answered 405 with the API's headers — reach the API.
    """

    def __init__(self, path: str, *, exclude: set[str]) -> None:
        super().__init__(path)
        self.exclude = exclude

    def match(self, request: HTTPServerRequest) -> dict[str, Any] | None:
        if request.method in self.exclude:
            return None
        return super().match(request)


def make_app(
    services: Services, *, root: str | None = None, **settings: Any
) -> tornado.web.Application:
    """The Tornado application; *root* (by default the configured one) holds static/, dist/."""
    root = services.config.server.root if root is None else root
    roots = [os.path.join(root, "static"), os.path.join(root, "dist")]
    rules: list[Any] = [
        Rule(MethodPath("/login", exclude={"GET", "HEAD"}), LoginHandler),
        (r"/logout", LogoutHandler),
        (r"/api/me", MeHandler),
        (r"/api/sessions", SessionsHandler),
        (r"/api/sessions/end-others", EndOthersHandler),
        (r"/api/sessions/([A-Za-z0-9_-]+)", SessionHandleHandler),
        (r"/api/device-binding/register", RegisterHandler),
        (r"/api/device-binding/refresh", RefreshHandler),
        (r"/api/.*", NotFoundHandler),
        (r"/healthz", HealthHandler),
        (r"/metrics", MetricsHandler),
        (r"/(.*)", FrontendHandler, {"roots": roots}),
    ]
    config = services.config
    settings.setdefault(
        "log_function",
        RequestLog(
            access=config.log.access,
            trust_proxy=config.server.trust_proxy,
            metrics=services.metrics,
            routes=route_labels(rules),
            client=partial(client_address, trust_proxy=True),
        ),
    )
    return Application(
        rules,
        services=services,
        session_manager=services.sessions,
        default_handler_class=NotFoundHandler,  # e.g. "GET *" or an absolute-form target
        # Makes Tornado call check_xsrf_cookie() before prepare() on every unsafe method;
        # BaseHandler's checks Origin/Referer instead of a token cookie (a JSON API).
        xsrf_cookies=True,
        metrics=services.metrics,
        **settings,
    )


def route_labels(rules: list[Any]) -> dict[type[tornado.web.RequestHandler], str]:
    """Each handler class's route pattern, the label its requests are counted under.

    The first rule naming a class wins; NotFoundHandler answers paths that no route serves.
    """
    labels: dict[type[tornado.web.RequestHandler], str] = {NotFoundHandler: "(none)"}
    for rule in rules:
        matcher, target = (rule.matcher, rule.target) if isinstance(rule, Rule) else rule[:2]
        if isinstance(matcher, PathMatches):
            matcher = matcher.regex.pattern
        labels.setdefault(target, str(matcher).removesuffix("$"))
    return labels
