"""Origins for the cross-site request forgery check: ``scheme://host[:port]``, normalised.

Browsers name the page a request comes from in ``Origin`` (every cross-origin POST, and
same-origin ones in current browsers) or, older ones, only in ``Referer``. A request with
neither does not come from a page (curl, a server), so it cannot be forged by one.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str, *, path_allowed: bool = False) -> str | None:
    """The normalised origin of an absolute http(s) URL; None for anything else.

    Lower case, no default port. An ``Origin`` header is only the origin (``path_allowed``
    false); a ``Referer`` is a whole URL whose origin counts. User info, an empty host or a
    bad port make it no origin at all — and no origin is never ours.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:  # a port out of range, an unbalanced IPv6 bracket, ...
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in _DEFAULT_PORTS or not host or "@" in parts.netloc:
        return None
    if not path_allowed and (parts.path or parts.query or parts.fragment):
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def is_cross_origin(
    origin: str | None, referer: str | None, own: str | None, allowed: Iterable[str]
) -> bool:
    """Whether the page behind a request is neither ours nor an allowed one.

    ``Origin: null`` (a sandboxed frame, a redirect from elsewhere, a file) is foreign. An
    empty header counts as none: browsers omit these headers rather than send them empty.
    """
    if origin and origin.strip():
        claimed = origin_of(origin)
    elif referer and referer.strip():
        claimed = origin_of(referer, path_allowed=True)
    else:
        return False  # not sent by a browser page
    if claimed is None:
        return True
    return claimed != own and claimed not in {origin_of(a) for a in allowed}
