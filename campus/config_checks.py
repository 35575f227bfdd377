"""The rules a merged configuration must pass before campus starts.

Each failure is a ConfigError naming the key and where its value came from (file and key,
variable, flag, or the default), and never showing a secret.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from campus.session.stores.redis_url import SCHEMES as REDIS_SCHEMES
from campus.session.stores.redis_url import parse_redis_url
from campus.settings import DEV_SECRET, MIN_SECRET_LENGTH, ConfigError

Values = dict[str, dict[str, tuple[Any, str]]]  # section -> key -> (value, where it came from)

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 6265 cookie-name (an RFC 2616 token)
_DOMAIN = re.compile(r"[A-Za-z0-9.-]*")
_ORIGIN = re.compile(r"https?://[^/?#\s]+")
_BEARER = re.compile(r"([A-Za-z0-9._~+/-]{16,}=*)?")  # RFC 6750 b64token, 16 at least; or none


def _all(pattern: re.Pattern[str]) -> Callable[[tuple[str, ...]], bool]:
    return lambda items: all(pattern.fullmatch(item) for item in items)


def show_value(value: object, key: str) -> str:
    """A short one-line rendering of a bad value that never reveals a secret or password."""
    if "secret" in key or key == "token":
        return f"a value of type {type(value).__name__}"
    if key == "url" and isinstance(value, str):  # a Redis URL may carry a password
        return repr(urlsplit(value).scheme + "://...")
    if isinstance(value, bool):
        return str(value).lower()
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check(values: Values, production: bool) -> None:
    """Checks after merging; each failure names the key and where its value came from."""

    def require(section: str, key: str, test: Callable[[Any], object], rule: str) -> None:
        value, where = values[section][key]
        if not test(value):
            raise ConfigError(f"{where}: {rule}, got {show_value(value, key)}")

    server, session = values["server"], values["session"]
    origins, where = server["allowed_origins"]  # browsers send origins in lower case
    server["allowed_origins"] = (tuple(origin.lower() for origin in origins), where)
    same_site, where = session["same_site"]
    session["same_site"] = (same_site.lower(), where)
    require("server", "port", lambda v: 0 <= v <= 65535, "must be 0..65535 (0: any free port)")
    require("server", "allowed_origins", _all(_ORIGIN), "want scheme://host[:port] each")
    require("session", "store", ("memory", "redis").__contains__, "must be memory or redis")
    require(
        "session",
        "same_site",
        ("strict", "lax", "none").__contains__,
        "must be strict, lax or none",
    )
    require("session", "domain", _DOMAIN.fullmatch, "must be a host name or empty")
    require("session", "cookie_name", _TOKEN.fullmatch, "must be a cookie name (RFC 6265 token)")
    require("express", "cookie_name", _TOKEN.fullmatch, "must be a cookie name (RFC 6265 token)")
    require("log", "format", ("text", "json").__contains__, "must be text or json")
    require(
        "metrics",
        "token",
        _BEARER.fullmatch,
        "must be empty or 16+ characters of A-Z a-z 0-9 ._~+/-",
    )
    require(
        "users",
        "min_password_length",
        lambda v: 8 <= v <= 1024,
        "must be 8..1024 (NIST SP 800-63B: at least 8)",
    )
    for section, key in (
        ("server", "processes"),
        ("server", "max_connections"),
        ("server", "idle_timeout"),
        ("server", "header_timeout"),
        ("server", "body_timeout"),
        ("session", "idle_timeout"),
        ("session", "absolute_timeout"),
        ("session", "max_sessions"),
        ("redis", "timeout"),
        ("login", "max_failures"),
        ("login", "window"),
    ):
        require(section, key, lambda v: v > 0, "must be positive")
    schemes = ", ".join(REDIS_SCHEMES)
    require(
        "redis",
        "url",
        lambda v: urlsplit(v).scheme.lower() in REDIS_SCHEMES,
        f"scheme must be {schemes}",
    )
    url, where = values["redis"]["url"]
    try:
        parse_redis_url(url)  # the shape of Sentinel and Cluster URLs
    except ValueError as err:
        raise ConfigError(f"{where}: {err}, got {show_value(url, 'url')}") from None
    require("users", "file", bool, "must not be empty")
    _check_secrets(values, production)
    _check_cookie(session)
    _check_express(values)


def _check_secrets(values: Values, production: bool) -> None:
    for section, key in (("session", "secret"), ("express", "secrets")):
        secrets, where = values[section][key]
        if not all(secrets):
            raise ConfigError(f"{where}: a secret is empty")
    secrets, where = values["session"]["secret"]
    if not production:
        if not secrets:
            raise ConfigError(f"{where}: at least one secret is needed")
        return
    problem = "" if secrets and not where.endswith("(default)") else "none is set"
    for number, secret in enumerate(secrets if not problem else (), start=1):
        if secret == DEV_SECRET:
            problem = f"secret {number} from {where} is the development default"
        elif len(secret) < MIN_SECRET_LENGTH and not problem:
            problem = f"secret {number} from {where} is too short"
    if problem:
        raise ConfigError(
            f"production needs CAMPUS_SESSION_SECRET: at least {MIN_SECRET_LENGTH} characters,"
            f" not the development default ({problem})"
        )


def _check_cookie(session: dict[str, tuple[Any, str]]) -> None:
    """SPEC "The session cookie": browsers ignore these cookies unless they are Secure."""
    name, name_at = session["cookie_name"]
    secure, secure_at = session["secure"]
    not_secure = f"needs session.secure = true, not {show_value(secure, '')} ({secure_at})"
    if name.lower().startswith(("__host-", "__secure-")) and secure is not True:
        raise ConfigError(f"{name_at}: a {name.split('-')[0]}- cookie name {not_secure}")
    if name.lower().startswith("__host-") and session["domain"][0]:
        where = session["domain"][1]
        raise ConfigError(f"{name_at}: a __Host- cookie cannot have a domain ({where})")
    if session["same_site"][0] == "none" and secure is not True:
        raise ConfigError(f"{session['same_site'][1]}: SameSite=None {not_secure}")


def _check_express(values: Values) -> None:
    """The Express records live in Redis, and a session carried over must outlive the process.

    With the memory store, a session carried over on one process is unknown to the others and
    lost on restart, while its Express record is already deleted: the user would be logged
    out, which is what the cut-over exists to prevent. So refuse rather than half-work.
    """
    secrets, secrets_at = values["express"]["secrets"]
    store, store_at = values["session"]["store"]
    if secrets and store != "redis":
        raise ConfigError(
            f"{secrets_at}: the Express cut-over reads connect-redis sessions from Redis and"
            f' needs session.store = "redis", not {store!r} ({store_at})'
        )
