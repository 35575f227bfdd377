"""One frozen configuration tree from flags, environment, a TOML file and built-in defaults.

Precedence, highest first: command-line flags, CAMPUS_* variables, the config file, the
dataclass defaults below (which are also the schema: a key exists if a field does). Every
problem is a ConfigError whose message is one line naming where the value came from (file
and key, variable, or flag), so the CLI can print it and exit without a traceback. Secret
values never appear in a message.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from campus.session.stores.redis_url import SCHEMES, parse_redis_url

DEV_SECRET = "campus-development-secret-do-not-use-in-production"
MIN_SECRET_LENGTH = 32
REDIS_SCHEMES = SCHEMES  # redis, rediss, unix, redis+sentinel, redis+cluster


class ConfigError(Exception):
    """A configuration the server must refuse; str() is one line naming source and key."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """[server]: where to listen, and whom to believe about the client (a proxy in front)."""

    host: str = "127.0.0.1"
    port: int = 8000
    trust_proxy: bool = False
    allowed_origins: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """[session]: the cookie policy and session lifetimes; secrets are kept out of repr()."""

    secret: tuple[str, ...] = field(default=(DEV_SECRET,), repr=False)  # first signs, all verify
    store: Literal["memory", "redis"] = "memory"
    cookie_name: str = "campus.sid"
    same_site: Literal["strict", "lax", "none"] = "lax"
    secure: bool | Literal["auto"] = "auto"
    domain: str = ""
    idle_timeout: int = 1800
    absolute_timeout: int = 28800
    rolling: bool = True
    save_uninitialized: bool = False
    max_sessions: int = 100000


@dataclass(frozen=True, slots=True)
class RedisConfig:
    """[redis]: the production store; the URL may carry a password, so never log it whole."""

    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "campus:"
    timeout: float = 1.0


@dataclass(frozen=True, slots=True)
class UsersConfig:
    """[users]: the JSON file of accounts."""

    file: str = "config/users.dev.json"


@dataclass(frozen=True, slots=True)
class LoginConfig:
    """[login]: failed-login throttling, counted in the store so all processes share it."""

    max_failures: int = 5
    window: int = 900


@dataclass(frozen=True, slots=True)
class ExpressConfig:
    """[express]: carrying sessions over from the Express app on cut-over day."""

    secrets: tuple[str, ...] = field(default=(), repr=False)  # empty: cut-over is off
    cookie_name: str = "connect.sid"
    prefix: str = "sess:"


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration; frozen, so handlers can share it without copying."""

    env: Literal["development", "production"] = "development"
    source: str | None = None  # the config file actually read
    server: ServerConfig = field(default_factory=ServerConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    users: UsersConfig = field(default_factory=UsersConfig)
    login: LoginConfig = field(default_factory=LoginConfig)
    express: ExpressConfig = field(default_factory=ExpressConfig)

    @property
    def production(self) -> bool:
        """NODE_ENV=production's analogue: strict secrets, and the warnings that go with it."""
        return self.env == "production"


_SECTIONS: Mapping[str, type[Any]] = {
    "server": ServerConfig,
    "session": SessionConfig,
    "redis": RedisConfig,
    "users": UsersConfig,
    "login": LoginConfig,
    "express": ExpressConfig,
}
# Short forms of CAMPUS_<SECTION>_<KEY>. If both spellings are set, the long form wins: it is
# the precise one. (CAMPUS_SESSION_SECRET, CAMPUS_REDIS_URL, CAMPUS_USERS_FILE are long forms.)
_SHORT_ENV = {
    "CAMPUS_HOST": ("server", "host"),
    "CAMPUS_PORT": ("server", "port"),
    "CAMPUS_STORE": ("session", "store"),
}
_EXPECTED = {
    "bool": "a boolean",
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "list": "a list of strings",
    "secrets": "a string or a list of strings",
    "secure": 'true, false or "auto"',
}
_BOOL_WORDS = dict.fromkeys(("true", "1", "yes", "on"), True)
_BOOL_WORDS |= dict.fromkeys(("false", "0", "no", "off"), False)
_INT = re.compile(r"[+-]?[0-9]+")  # [0-9], not \d: int() would take other scripts' digits
_FLOAT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 6265 cookie-name (an RFC 2616 token)
_DOMAIN = re.compile(r"[A-Za-z0-9.-]*")
_ORIGIN = re.compile(r"https?://[^/?#\s]+")

_Values = dict[str, dict[str, tuple[Any, str]]]  # section -> key -> (value, where it came from)


def _kind(section: str, key: str) -> str:
    """The kind of a key, read off its default so the dataclasses stay the one schema."""
    if (section, key) == ("session", "secure"):
        return "secure"
    if (section, key) == ("session", "secret"):
        return "secrets"
    default = next(f.default for f in dataclasses.fields(_SECTIONS[section]) if f.name == key)
    for kind, cls in (("bool", bool), ("int", int), ("float", float), ("list", tuple)):
        if isinstance(default, cls):
            return kind
    return "str"


def _from_toml(kind: str, value: Any) -> Any:
    """TOML is typed: only the type is checked (bool is an int in Python, so exclude it)."""
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "float" and type(value) in (int, float) and abs(value) < 1e300:  # not nan/inf
        return float(value)
    if kind == "str" and isinstance(value, str):
        return value
    if kind == "secure" and (isinstance(value, bool) or value == "auto"):
        return value
    if kind == "secrets" and isinstance(value, str):
        return (value,)
    if kind in ("list", "secrets") and isinstance(value, list) and all(_is_str(v) for v in value):
        return tuple(value)
    raise ValueError(kind)


def _from_env(kind: str, text: str) -> Any:
    """Environment values are text: parse strictly, so a typo is an error, not a surprise."""
    word = text.strip().lower()
    if kind in ("list", "secrets"):
        return tuple(item.strip() for item in text.split(",") if item.strip())
    if kind == "str":
        return text
    if kind == "secure" and word == "auto":
        return "auto"
    if kind in ("bool", "secure") and word in _BOOL_WORDS:
        return _BOOL_WORDS[word]
    if kind == "int" and _INT.fullmatch(word):
        return int(word)
    if kind == "float" and _FLOAT.fullmatch(word) and abs(float(word)) < 1e300:
        return float(word)
    raise ValueError(kind)


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _all(pattern: re.Pattern[str]) -> Callable[[tuple[str, ...]], bool]:
    return lambda items: all(pattern.fullmatch(item) for item in items)


def _show(value: object, key: str) -> str:
    """A short one-line rendering of a bad value that never reveals a secret or password."""
    if "secret" in key:
        return f"a value of type {type(value).__name__}"
    if key == "url" and isinstance(value, str):  # a Redis URL may carry a password
        return repr(urlsplit(value).scheme + "://...")
    if isinstance(value, bool):
        return str(value).lower()
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _read_toml(path: str, named_by: str | None) -> dict[str, Any] | None:
    """Parse the file; a missing default file means defaults (campus run from elsewhere)."""
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        if named_by is None:
            return None
        raise ConfigError(f"{path}: config file not found (named by {named_by})") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: invalid TOML: the file is not UTF-8") from None


def _apply_file(values: _Values, path: str, data: dict[str, Any]) -> None:
    for section, table in data.items():
        if section not in _SECTIONS or not isinstance(table, dict):
            what = "section" if isinstance(table, dict) else "key outside any section"
            sections = ", ".join(_SECTIONS)
            raise ConfigError(f"{path}: {section}: unknown {what} (sections: {sections})")
        for key, raw in table.items():
            where = f"{path}: {section}.{key}"
            if key not in values[section]:
                raise ConfigError(f"{where}: unknown key (keys: {', '.join(values[section])})")
            kind = _kind(section, key)
            try:
                values[section][key] = (_from_toml(kind, raw), where)
            except ValueError:
                got = _show(raw, key)
                raise ConfigError(f"{where}: expected {_EXPECTED[kind]}, got {got}") from None


def _apply_environ(values: _Values, environ: Mapping[str, str]) -> None:
    long_names = {f"CAMPUS_{s}_{k}".upper(): (s, k) for s in values for k in values[s]}
    for name in sorted(environ):
        for section in _SECTIONS:  # a known section's prefix with an unknown key: a typo
            if name.startswith(f"CAMPUS_{section.upper()}_") and name not in long_names:
                keys = ", ".join(values[section])
                raise ConfigError(f"{name}: unknown setting: [{section}] has only {keys}")
    chosen = {name: place for name, place in _SHORT_ENV.items() if name in environ}
    chosen |= {name: long_names[name] for name in sorted(environ) if name in long_names}
    for name, (section, key) in chosen.items():  # short forms first, so long forms win
        kind = _kind(section, key)
        try:
            values[section][key] = (_from_env(kind, environ[name]), name)
        except ValueError:
            got = _show(environ[name], key)
            raise ConfigError(f"{name}: expected {_EXPECTED[kind]}, got {got}") from None


def _check(values: _Values, production: bool) -> None:
    """Checks after merging; each failure names the key and where its value came from."""

    def require(section: str, key: str, test: Callable[[Any], object], rule: str) -> None:
        value, where = values[section][key]
        if not test(value):
            raise ConfigError(f"{where}: {rule}, got {_show(value, key)}")

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
    for section, key in (
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
        raise ConfigError(f"{where}: {err}, got {_show(url, 'url')}") from None
    require("users", "file", bool, "must not be empty")
    _check_secrets(values, production)
    _check_cookie(session)
    _check_express(values)


def _check_secrets(values: _Values, production: bool) -> None:
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
    not_secure = f"needs session.secure = true, not {_show(secure, '')} ({secure_at})"
    if name.lower().startswith(("__host-", "__secure-")) and secure is not True:
        raise ConfigError(f"{name_at}: a {name.split('-')[0]}- cookie name {not_secure}")
    if name.lower().startswith("__host-") and session["domain"][0]:
        where = session["domain"][1]
        raise ConfigError(f"{name_at}: a __Host- cookie cannot have a domain ({where})")
    if session["same_site"][0] == "none" and secure is not True:
        raise ConfigError(f"{session['same_site'][1]}: SameSite=None {not_secure}")


def _check_express(values: _Values) -> None:
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


def load(
    *,
    environ: Mapping[str, str],
    env: str | None = None,
    config_file: str | None = None,
    host: str | None = None,
    port: int | None = None,
) -> Config:
    """Build the Config; env, config_file, host and port are the flags (None: not given)."""
    env_at = "--env" if env is not None else "CAMPUS_ENV"
    env_name = env if env is not None else environ.get("CAMPUS_ENV", "development")
    if env_name not in ("development", "production"):
        raise ConfigError(f"{env_at}: expected development or production, got {env_name!r}")
    if config_file is not None:
        path, named_by = config_file, "--config"
    elif "CAMPUS_CONFIG" in environ:
        path, named_by = environ["CAMPUS_CONFIG"], "CAMPUS_CONFIG"
    else:
        path, named_by = f"config/{env_name}.toml", None
    values: _Values = {
        name: {f.name: (f.default, f"{name}.{f.name} (default)") for f in dataclasses.fields(cls)}
        for name, cls in _SECTIONS.items()
    }
    data = _read_toml(path, named_by)
    if data is not None:
        _apply_file(values, path, data)
    _apply_environ(values, environ)
    if host is not None:
        values["server"]["host"] = (host, "--host")
    if port is not None:
        values["server"]["port"] = (port, "--port")
    _check(values, production=env_name == "production")
    built = {
        name: cls(**{k: v for k, (v, _) in values[name].items()}) for name, cls in _SECTIONS.items()
    }
    return Config(
        env="production" if env_name == "production" else "development",
        source=None if data is None else path,
        **built,
    )
