"""The configuration: one frozen tree from flags, environment, a TOML file and defaults.

``schema`` is its shape (frozen dataclasses: keys, types, defaults), ``loader`` merges the
sources, ``checks`` holds the rules a merged tree must pass. Everyone else imports from here.

May import: :mod:`campus.session` (the Redis URL forms it accepts). Nothing else of campus.
"""

from campus.config.loader import known_variables, load
from campus.config.schema import (
    DEV_SECRET,
    MIN_SECRET_LENGTH,
    Argon2Params,
    Config,
    ConfigError,
    ExpressConfig,
    LogConfig,
    LoginConfig,
    MetricsConfig,
    RedisConfig,
    ServerConfig,
    SessionConfig,
    UsersConfig,
)

__all__ = [
    "DEV_SECRET",
    "MIN_SECRET_LENGTH",
    "Argon2Params",
    "Config",
    "ConfigError",
    "ExpressConfig",
    "LogConfig",
    "LoginConfig",
    "MetricsConfig",
    "RedisConfig",
    "ServerConfig",
    "SessionConfig",
    "UsersConfig",
    "known_variables",
    "load",
]
