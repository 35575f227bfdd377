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
from collections.abc import Mapping
from typing import Any

from campus.config_checks import Values, check, show_value
from campus.session.stores.redis_url import SCHEMES
from campus.settings import (  # re-exported: campus.config is where callers look
    DEV_SECRET,
    MIN_SECRET_LENGTH,
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
    "REDIS_SCHEMES",
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
    "load",
]

REDIS_SCHEMES = SCHEMES  # redis, rediss, unix, redis+sentinel, redis+cluster


_SECTIONS: Mapping[str, type[Any]] = {
    "server": ServerConfig,
    "session": SessionConfig,
    "redis": RedisConfig,
    "users": UsersConfig,
    "login": LoginConfig,
    "log": LogConfig,
    "metrics": MetricsConfig,
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


def _apply_file(values: Values, path: str, data: dict[str, Any]) -> None:
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
                got = show_value(raw, key)
                raise ConfigError(f"{where}: expected {_EXPECTED[kind]}, got {got}") from None


def _apply_environ(values: Values, environ: Mapping[str, str]) -> None:
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
            got = show_value(environ[name], key)
            raise ConfigError(f"{name}: expected {_EXPECTED[kind]}, got {got}") from None


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
    values: Values = {
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
    check(values, production=env_name == "production")
    built = {
        name: cls(**{k: v for k, (v, _) in values[name].items()}) for name, cls in _SECTIONS.items()
    }
    return Config(
        env="production" if env_name == "production" else "development",
        source=None if data is None else path,
        **built,
    )
