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

from campus.handlers.base import ApiError, BaseHandler

_FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class MetricsHandler(BaseHandler):
    def get(self) -> None:
        metrics = self.services.metrics
        if metrics is None or not self._allowed():
            raise ApiError(404, "Not found")
        body, content_type = metrics.exposition(self.request.headers.get("Accept"))
        self.set_header("Content-Type", content_type)
        self.finish(body)

    def _allowed(self) -> bool:
        token = self.services.config.metrics.token
        if token:
            presented = self.request.headers.get("Authorization", "")
            expected = f"Bearer {token}"
            return hmac.compare_digest(presented.encode(), expected.encode())
        headers = self.request.headers
        if any(name in headers for name in _FORWARDING_HEADERS):
            return False
        return is_loopback(self.request.remote_ip or "")
