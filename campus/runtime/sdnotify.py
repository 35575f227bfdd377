"""Tell systemd how we are doing (``Type=notify``), without depending on libsystemd.

The protocol is one datagram of newline-separated ``KEY=value`` lines sent to the Unix
socket named by ``$NOTIFY_SOCKET``; a name starting with ``@`` is in the abstract namespace.
Without the variable (not started by systemd) every call is a no-op, and a failure to send
is logged, never raised: the service must not die because its supervisor went away.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("campus")


def _address(environ: Mapping[str, str]) -> str | None:
    name = environ.get("NOTIFY_SOCKET", "")
    if name.startswith("@"):
        return "\0" + name[1:]
    if name.startswith("/"):
        return name
    return None  # unset, or a transport we do not speak (vsock:)


def notify(*lines: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Send ``READY=1``, ``STOPPING=1``, ``STATUS=...`` and the like; True if sent."""
    address = _address(environ)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(lines).encode())
    except OSError as exc:
        log.warning("cannot notify systemd at %s: %s", environ.get("NOTIFY_SOCKET"), exc)
        return False
    return True
