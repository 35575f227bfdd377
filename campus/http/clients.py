"""Who the client is: its address, one spelling per address, from the peer or a trusted proxy.

The address keys the login throttle and the access log, so junk must never mint new keys.
"""

from __future__ import annotations

import ipaddress
import re

from tornado.httputil import HTTPServerRequest

_PORT = re.compile(r":[0-9]{1,5}")


def client_address(request: HTTPServerRequest, *, trust_proxy: bool) -> str:
    """The client's address; behind a trusted proxy, the one it appended last.

    One spelling per address (it keys the login throttle): a hop that is not an address
    falls back to the peer, so junk cannot mint new keys.
    """
    peer = request.remote_ip or ""
    if trust_proxy:
        forwarded = request.headers.get("X-Forwarded-For", "")
        hop = ip_address(forwarded.rsplit(",", 1)[-1])
        if hop is not None:
            return hop
    return ip_address(peer) or peer


def ip_address(text: str) -> str | None:
    """*text* as an IP address in its one normal form, or None if it is not one.

    Takes what proxies write: ``198.51.100.7``, ``198.51.100.7:1234``, ``2001:db8::1``,
    ``[2001:db8::1]`` and ``[2001:db8::1]:1234``; an IPv4-mapped IPv6 address is the IPv4
    one, a zone (``%eth0``) is dropped. ``198.051.100.7`` is refused: is 051 octal?
    """
    text = text.strip()
    if text.startswith("["):
        text, bracket, port = text[1:].partition("]")
        if not bracket or (port and not _is_port(port)):
            return None
    elif text.count(":") == 1:
        text, port = text.split(":")
        if not _is_port(":" + port):
            return None
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _is_port(text: str) -> bool:
    """``:`` and a TCP port number, in ASCII digits."""
    return _PORT.fullmatch(text) is not None and 0 < int(text[1:]) < 65536


def client_key(address: str, ipv6_prefix: int = 64) -> str:
    """What counts as one client for per-client limits (connections, logins).

    An IPv4 address is one client; an IPv6 one is its ``/ipv6_prefix`` network (``[login]
    ipv6_prefix``), as a subscriber gets a whole /64 and can rotate through it at will. The
    one place that says so: every per-client count keys on what this returns.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an address (a Unix socket peer): itself
    if isinstance(ip, ipaddress.IPv4Address) or ipv6_prefix >= 128:
        return str(ip)
    return str(ipaddress.IPv6Network((ip, ipv6_prefix), strict=False))
