"""GET /metrics: Prometheus's view of this process (or of every worker, in multiprocess mode).

Who may read it: with ``[metrics] token`` set, whoever presents ``Authorization: Bearer
<token>`` (loopback clients too); without one, loopback clients only. A request that a proxy
forwarded (it carries ``Forwarded``, ``X-Forwarded-For`` or ``X-Real-IP``) is never a
loopback client, trusted proxy or not: nginx on the same machine must not make the metrics
public. Anyone else gets the same 404 as a path that does not exist.
"""

from __future__ import annotations

import hmac
import ipaddress

from campus.web.handlers.base import ApiError, BaseHandler

_FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class MetricsHandler(BaseHandler):
    # Every method reaches prepare(), so that one who may not read the metrics gets the 404
    # of a path that does not exist whatever the method (a 405 would say it exists).
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

    def prepare(self) -> None:
        if self.services.metrics is None or not self._allowed():
            raise ApiError(404, "Not found")
        if self.request.method not in ("GET", "HEAD"):
            raise ApiError(405, "Method not allowed")

    def check_xsrf_cookie(self) -> None:
        """Refused above anyway: the 404 must come first, not the cross-origin 403."""

    def get(self) -> None:
        assert self.services.metrics is not None  # prepare() checked
        accept = self.request.headers.get("Accept")
        body, content_type = self.services.metrics.exposition(accept)
        self.set_header("Content-Type", content_type)
        self.finish(body)

    head = get

    def _allowed(self) -> bool:
        token = self.services.config.metrics.token
        if token:
            # The scheme's name is case-insensitive (RFC 9110); the token is not.
            scheme, _, presented = self.request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer":
                return False
            return hmac.compare_digest(presented.strip().encode(), token.encode())
        headers = self.request.headers
        if any(name in headers for name in _FORWARDING_HEADERS):
            return False
        return is_loopback(self.request.remote_ip or "")
