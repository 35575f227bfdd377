"""The configuration's shape: frozen dataclasses whose fields are the keys and defaults.

Kept apart from the loading (campus/config/loader.py) so that anything needing only the types —
handlers, services, tests — reads 120 lines, not the parser.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Literal

DEV_SECRET = "campus-development-secret-do-not-use-in-production"
MIN_SECRET_LENGTH = 32


class ConfigError(Exception):
    """A configuration the server must refuse; str() is one line naming source and key."""


class Source(enum.Enum):
    """Where a setting's value came from, lowest precedence first."""

    DEFAULT = "default"  # the dataclass default, or the env's built-in default
    FILE = "file"
    ENVIRONMENT = "environment"
    FLAG = "flag"


@dataclass(frozen=True, slots=True)
class Setting:
    """One value while the configuration is being merged, with where it came from.

    ``where`` names it for messages: ``config/x.toml: session.store``, ``CAMPUS_STORE``,
    ``--port`` or ``session.store (default)``.
    """

    value: Any
    source: Source
    where: str


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """[server]: where to listen, and whom to believe about the client (a proxy in front)."""

    root: str = "."  # holds static/, dist/ and config/; relative: to the current directory
    host: str = "127.0.0.1"
    port: int = 8000
    trust_proxy: bool = False
    allowed_origins: tuple[str, ...] = ()
    processes: int = 1  # worker processes sharing the port (SO_REUSEPORT)
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"  # auto: uvloop when installed
    max_connections: int = 4096  # open client connections; past it new ones are refused
    max_connections_per_client: int = 256  # per peer address (not with trust_proxy)
    idle_timeout: float = 75.0  # seconds a keep-alive connection may sit between requests
    header_timeout: float = 10.0  # seconds a client may take to send a request's headers
    body_timeout: float = 30.0  # seconds a client may take to send a request's body


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
    # Device-bound sessions (DBSC): "off", "optional" (bind when the browser can) or "required".
    device_binding: Literal["off", "optional", "required"] = "optional"


@dataclass(frozen=True, slots=True)
class RedisConfig:
    """[redis]: the production store; the URL may carry a password, so never log it whole."""

    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "campus:"
    timeout: float = 1.0


@dataclass(frozen=True, slots=True)
class Argon2Params:
    """``[users] argon2``: the cost of new hashes; older hashes are upgraded at login.

    The defaults are argon2-cffi's (RFC 9106's second recommendation), above OWASP's
    minimum (19 MiB, 2 passes, 1 lane).
    """

    memory_kib: int = 65536
    time_cost: int = 3
    parallelism: int = 4


@dataclass(frozen=True, slots=True)
class UsersConfig:
    """[users]: the JSON file of accounts, the password policy, the hash's cost."""

    file: str = "config/users.dev.json"  # relative: to the root
    min_password_length: int = 15  # for `users add`; 8 is the lowest allowed
    argon2: Argon2Params = field(default_factory=Argon2Params)


@dataclass(frozen=True, slots=True)
class LoginConfig:
    """[login]: failed-login throttling, counted in the store so all processes share it."""

    max_failures: int = 5
    window: int = 900
    #: IPv6 clients are counted (and their connections capped) per network of this length.
    ipv6_prefix: int = 64


@dataclass(frozen=True, slots=True)
class LogConfig:
    """[log]: how lines look on stderr, and whether each request gets one."""

    format: Literal["text", "json"] = "text"
    access: bool = True


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """[metrics]: GET /metrics for Prometheus; loopback clients only unless a token is set."""

    enabled: bool = True
    token: str = field(default="", repr=False)


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
    source: str | None = None  # the config file actually read (an absolute path)
    server: ServerConfig = field(default_factory=ServerConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    users: UsersConfig = field(default_factory=UsersConfig)
    login: LoginConfig = field(default_factory=LoginConfig)
    log: LogConfig = field(default_factory=LogConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    express: ExpressConfig = field(default_factory=ExpressConfig)

    @property
    def production(self) -> bool:
        """NODE_ENV=production's analogue: strict secrets, and the warnings that go with it."""
        return self.env == "production"


#: What production means, whether or not config/production.toml is found.
PRODUCTION_DEFAULTS: dict[tuple[str, str], Any] = {
    ("session", "store"): "redis",
    ("session", "secure"): True,
    ("users", "file"): "/etc/campus/users.json",
}
