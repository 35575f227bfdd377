"""The rules a merged configuration must pass before campus starts.

Each failure is a ConfigError naming the key and where its value came from (file and key,
variable, flag, or the default), and never showing a secret.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from campus.config.schema import DEV_SECRET, MIN_SECRET_LENGTH, ConfigError, Setting, Source
from campus.session.stores.redis_url import SCHEMES as REDIS_SCHEMES
from campus.session.stores.redis_url import parse_redis_url

Values = dict[str, dict[str, Setting]]  # section -> key -> value and where it came from

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
        scheme = value.partition("://" if "://" in value else ":")[0]
        return repr(scheme[:20] + "://...")
    if isinstance(value, bool):
        return str(value).lower()
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _normalize(values: Values, section: str, key: str, change: Callable[[Any], Any]) -> None:
    setting = values[section][key]
    values[section][key] = Setting(change(setting.value), setting.source, setting.where)


def check(values: Values, *, production: bool, signing: bool = True) -> None:
    """Checks after merging; each failure names the key and where its value came from.

    ``signing`` false: a command that signs no cookie; the session secret is not needed.
    """

    def require(section: str, key: str, test: Callable[[Any], object], rule: str) -> None:
        setting = values[section][key]
        if not test(setting.value):
            raise ConfigError(f"{setting.where}: {rule}, got {show_value(setting.value, key)}")

    # Browsers send origins in lower case.
    _normalize(values, "server", "allowed_origins", lambda v: tuple(o.lower() for o in v))
    _normalize(values, "session", "same_site", str.lower)
    _normalize(values, "session", "device_binding", str.lower)
    require("server", "port", lambda v: 0 <= v <= 65535, "must be 0..65535 (0: any free port)")
    require("server", "allowed_origins", _all(_ORIGIN), "want scheme://host[:port] each")
    require("session", "store", ("memory", "redis").__contains__, "must be memory or redis")
    require(
        "session",
        "same_site",
        ("strict", "lax", "none").__contains__,
        "must be strict, lax or none",
    )
    require(
        "session",
        "device_binding",
        ("off", "optional", "required").__contains__,
        "must be off, optional or required",
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
        "server",
        "event_loop",
        ("auto", "uvloop", "asyncio").__contains__,
        "must be auto, uvloop or asyncio",
    )
    require(
        "users",
        "min_password_length",
        lambda v: 8 <= v <= 1024,
        "must be 8..1024 (NIST SP 800-63B: at least 8)",
    )
    require(
        "login",
        "ipv6_prefix",
        lambda v: 32 <= v <= 128,
        "must be 32..128 (64: one subscriber's network; 128: each address on its own)",
    )
    for section, key in (
        ("server", "processes"),
        ("server", "max_connections"),
        ("server", "max_connections_per_client"),
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
        lambda v: "://" in v and v.partition("://")[0].lower() in REDIS_SCHEMES,
        f"scheme must be {schemes}",
    )
    url = values["redis"]["url"]
    try:
        parse_redis_url(url.value)  # host, port and database, for every scheme
    except ValueError as err:
        raise ConfigError(f"{url.where}: {err}, got {show_value(url.value, 'url')}") from None
    require("users", "file", bool, "must not be empty")
    argon2 = values["users"]["argon2"]
    if argon2.value.memory_kib < 8 * argon2.value.parallelism:
        raise ConfigError(f"{argon2.where}: Argon2 needs memory_kib >= 8 x parallelism")
    _check_processes(values)
    if signing:
        _check_secrets(values, production)
    _check_cookie(values["session"])
    _check_express(values)


def _check_processes(values: Values) -> None:
    """Processes behind one port only share sessions through Redis."""
    processes, store = values["server"]["processes"], values["session"]["store"]
    if processes.value > 1 and store.value != "redis":
        raise ConfigError(
            f"{processes.where}: {processes.value} processes need session.store = "
            f'"redis" to share sessions, not {store.value!r} ({store.where})'
        )


def _check_secrets(values: Values, production: bool) -> None:
    for section, key in (("session", "secret"), ("express", "secrets")):
        setting = values[section][key]
        if not all(setting.value):
            raise ConfigError(f"{setting.where}: a secret is empty")
    setting = values["session"]["secret"]
    secrets, where = setting.value, setting.where
    if not production:
        if not secrets:
            raise ConfigError(f"{where}: at least one secret is needed")
        return
    problem = "" if secrets and setting.source is not Source.DEFAULT else "none is set"
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


def _check_cookie(session: dict[str, Setting]) -> None:
    """Browsers ignore these cookies unless they are Secure."""
    name, name_at = session["cookie_name"].value, session["cookie_name"].where
    secure, secure_at = session["secure"].value, session["secure"].where
    not_secure = f"needs session.secure = true, not {show_value(secure, '')} ({secure_at})"
    if name.lower().startswith(("__host-", "__secure-")) and secure is not True:
        raise ConfigError(f"{name_at}: a {name.split('-')[0]}- cookie name {not_secure}")
    if name.lower().startswith("__host-") and session["domain"].value:
        where = session["domain"].where
        raise ConfigError(f"{name_at}: a __Host- cookie cannot have a domain ({where})")
    if session["same_site"].value == "none" and secure is not True:
        raise ConfigError(f"{session['same_site'].where}: SameSite=None {not_secure}")


def _check_express(values: Values) -> None:
    """The Express records live in Redis, and a session carried over must outlive the process.

    With the memory store, a session carried over on one process is unknown to the others and
    lost on restart, while its Express record is already deleted: the user would be logged
    out, which is what the cut-over exists to prevent. So refuse rather than half-work.
    """
    secrets, secrets_at = values["express"]["secrets"].value, values["express"]["secrets"].where
    store, store_at = values["session"]["store"].value, values["session"]["store"].where
    if secrets and store != "redis":
        raise ConfigError(
            f"{secrets_at}: the Express cut-over reads connect-redis sessions from Redis and"
            f' needs session.store = "redis", not {store!r} ({store_at})'
        )
