"""The client address behind a trusted proxy: one normal form per address, or the peer.

It keys the login throttle per address and fills the access log's client field; a hop
spelled three ways must not be three clients, and junk must not mint new ones.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import pytest
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

from campus.config import Config, LoginConfig
from campus.http.clients import client_address, client_key, ip_address
from tests.support.logs import access_lines

ADDRESS = "198.51.100.7"


@pytest.mark.parametrize(
    "hop, address",
    [
        (ADDRESS, ADDRESS),
        (f" {ADDRESS} ", ADDRESS),
        (f"{ADDRESS}:1234", ADDRESS),  # some proxies append the client's port
        (f"::ffff:{ADDRESS}", ADDRESS),  # an IPv4 client of a dual-stack proxy
        (f"[::ffff:{ADDRESS}]:443", ADDRESS),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:db8::1]:8080", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("198.051.100.7", None),  # octal or decimal? nobody can tell: not an address
        ("198.51.100", None),
        ("3325256711", None),  # an integer is an address to inet_aton, not here
        (f"{ADDRESS}:", None),
        (f"{ADDRESS}:0", None),
        (f"{ADDRESS}:65536", None),
        (f"{ADDRESS}:\uff11\uff12\uff13", None),  # fullwidth digits
        (f"{ADDRESS}:80:80", None),
        ("[2001:db8::1", None),
        ("[2001:db8::1]x", None),
        ("2001:db8::1]", None),
        ("unknown", None),
        ("_hidden", None),  # RFC 7239's obfuscated identifiers
        ("garbage", None),
        ("", None),
        ("٣.1.1.1", None),
    ],
)
def test_ip_address_normalizes_or_refuses(hop: str, address: str | None) -> None:
    assert ip_address(hop) == address


def request(peer: str, forwarded: str | None = None) -> HTTPServerRequest:
    headers = HTTPHeaders({"Host": "campus.test"})
    if forwarded is not None:
        headers["X-Forwarded-For"] = forwarded
    message = HTTPServerRequest(
        headers=headers, start_line=RequestStartLine("GET", "/", "HTTP/1.1")
    )
    message.remote_ip = peer
    return message


def test_client_address_uses_the_last_hop_only_when_trusted_and_valid() -> None:
    hops = f"203.0.113.9, {ADDRESS}:1234"
    assert client_address(request("10.0.0.1", hops), trust_proxy=True) == ADDRESS
    assert client_address(request("10.0.0.1", hops), trust_proxy=False) == "10.0.0.1"
    assert client_address(request("10.0.0.1", "203.0.113.9, junk"), trust_proxy=True) == "10.0.0.1"
    assert client_address(request("10.0.0.1", ""), trust_proxy=True) == "10.0.0.1"
    assert client_address(request("10.0.0.1"), trust_proxy=True) == "10.0.0.1"
    # A dual-stack listener sees IPv4 peers as mapped addresses: the same client either way.
    assert client_address(request(f"::ffff:{ADDRESS}"), trust_proxy=False) == ADDRESS


# --- through the app: the throttle and the access log -----------------------------------

LIMIT = 3


@pytest.fixture
def config(config: Config) -> Config:
    return dataclasses.replace(
        config,
        server=dataclasses.replace(config.server, trust_proxy=True),
        login=LoginConfig(max_failures=LIMIT, window=900),
    )


async def login(http_client: Any, base_url: str, email: str, hop: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if hop is not None:
        headers["X-Forwarded-For"] = hop
    body = json.dumps({"email": email, "password": "wrong"})
    response = await http_client.fetch(
        base_url + "/login", method="POST", body=body, headers=headers, raise_error=False
    )
    return int(response.code)


@pytest.mark.gen_test
async def test_one_address_spelled_three_ways_is_one_throttle_key(
    http_client: Any, base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    spellings = [f"{ADDRESS}:1234", f"::ffff:{ADDRESS}", f"[::ffff:{ADDRESS}]:443"]
    for number, hop in enumerate(spellings):  # a new email each time: only the address counts
        assert await login(http_client, base_url, f"guess{number}@campus.test", hop) == 403
    assert await login(http_client, base_url, "guess9@campus.test", ADDRESS) == 429
    assert {line["client"] for line in access_lines(caplog)} == {ADDRESS}


@pytest.mark.gen_test
async def test_junk_hops_count_against_the_peer(http_client: Any, base_url: str) -> None:
    for number, hop in enumerate(["198.051.100.7", "garbage", f"{ADDRESS}:99999"]):
        assert await login(http_client, base_url, f"junk{number}@campus.test", hop) == 403
    assert await login(http_client, base_url, "junk9@campus.test", None) == 429  # the peer
    assert await login(http_client, base_url, "junk9@campus.test", ADDRESS) == 403  # not it


@pytest.mark.parametrize(
    "address, prefix, key",
    [
        (ADDRESS, 64, ADDRESS),  # IPv4: the address itself
        ("2001:db8:1:2:aaaa::1", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", 64, "2001:db8:1:2::/64"),  # one subscriber
        ("2001:db8:1:3::1", 64, "2001:db8:1:3::/64"),  # the next subscriber
        ("2001:db8:1:2:aaaa::1", 56, "2001:db8:1::/56"),
        ("2001:db8:1:2:aaaa::1", 128, "2001:db8:1:2:aaaa::1"),  # each address on its own
        ("", 64, ""),  # no peer address (a Unix socket): itself
    ],
)
def test_ipv6_clients_are_keyed_by_their_prefix(address: str, prefix: int, key: str) -> None:
    assert client_key(address, prefix) == key
