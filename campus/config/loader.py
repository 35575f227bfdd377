"""One frozen configuration tree from flags, environment, a TOML file and built-in defaults.

Precedence, highest first: command-line flags, CAMPUS_* variables, the config file, the
built-in defaults of the env (production's are in ``PRODUCTION_DEFAULTS``; the rest are the
dataclass defaults, which are also the schema: a key exists if a field does). Every problem
is a ConfigError whose message is one line naming where the value came from (file and key,
variable, or flag), so the CLI can print it and exit without a traceback. Secret values
never appear in a message.

Paths: the root (``--root``, ``CAMPUS_ROOT``, ``[server] root``; the current directory by
default) holds static/, dist/ and the default config/<env>.toml. A relative root is taken
from the current directory; a relative users file from the root. The Config holds both as
absolute paths, so nothing later depends on the current directory.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from typing import Any

from campus.config.checks import Values, check, show_value
from campus.config.schema import (
    PRODUCTION_DEFAULTS,
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
    Setting,
    Source,
    UsersConfig,
)

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
    "CAMPUS_ROOT": ("server", "root"),
    "CAMPUS_STORE": ("session", "store"),
}
#: Variables that choose what to read rather than setting a key.
_META_ENV = ("CAMPUS_ENV", "CAMPUS_CONFIG")
_EXPECTED = {
    "bool": "a boolean",
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "list": "a list of strings",
    "secrets": "a string or a list of strings",
    "secure": 'true, false or "auto"',
    "argon2": "memory_kib, time_cost and parallelism as positive integers",
}
_BOOL_WORDS = dict.fromkeys(("true", "1", "yes", "on"), True)
_BOOL_WORDS |= dict.fromkeys(("false", "0", "no", "off"), False)
_INT = re.compile(r"[+-]?[0-9]+")  # [0-9], not \d: int() would take other scripts' digits
_FLOAT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
_ARGON2_KEYS = tuple(f.name for f in dataclasses.fields(Argon2Params))


def _long_names() -> dict[str, tuple[str, str]]:
    return {
        f"CAMPUS_{section}_{f.name}".upper(): (section, f.name)
        for section, cls in _SECTIONS.items()
        for f in dataclasses.fields(cls)
    }


def known_variables() -> list[str]:
    """Every CAMPUS_* name campus reads, for the help text and for typo hints."""
    return sorted([*_META_ENV, *_SHORT_ENV, *_long_names()])


def _kind(section: str, key: str) -> str:
    """The kind of a key, read off its default so the dataclasses stay the one schema."""
    if (section, key) == ("session", "secure"):
        return "secure"
    if (section, key) == ("session", "secret"):
        return "secrets"
    if (section, key) == ("users", "argon2"):
        return "argon2"
    default = _default(_SECTIONS[section], key)
    for kind, cls in (("bool", bool), ("int", int), ("float", float), ("list", tuple)):
        if isinstance(default, cls):
            return kind
    return "str"


def _argon2(pairs: Mapping[str, Any]) -> Argon2Params:
    """Argon2 parameters from a table (TOML) or ``k=v`` pairs (environment); ValueError else."""
    if not pairs or not set(pairs) <= set(_ARGON2_KEYS):
        raise ValueError("argon2")
    values = {}
    for key, value in pairs.items():
        if isinstance(value, str) and _INT.fullmatch(value.strip()):
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError("argon2")
        values[key] = value
    return dataclasses.replace(Argon2Params(), **values)


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
    if kind == "argon2" and isinstance(value, dict):
        return _argon2(value)
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
    if kind == "argon2":  # memory_kib=65536,time_cost=3,parallelism=4
        pairs = [item.partition("=") for item in word.split(",") if item.strip()]
        if all(sep for _, sep, _ in pairs):
            return _argon2({key.strip(): value for key, _, value in pairs})
    raise ValueError(kind)


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _read_toml(path: str, named_by: str | None) -> dict[str, Any] | None:
    """Parse the file; a missing default file means the env's built-in defaults."""
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        if named_by is None:
            return None
        raise ConfigError(f"{path}: config file not found (named by {named_by})") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
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
                values[section][key] = Setting(_from_toml(kind, raw), Source.FILE, where)
            except ValueError:
                got = show_value(raw, key)
                raise ConfigError(f"{where}: expected {_EXPECTED[kind]}, got {got}") from None


def _refuse_unknown(environ: Mapping[str, str], long_names: Mapping[str, Any]) -> None:
    """Any CAMPUS_* name campus does not read is a typo: refuse it rather than ignore it."""
    known = {*_META_ENV, *_SHORT_ENV, *long_names}
    for name in sorted(environ):
        if not name.startswith("CAMPUS_") or name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        hint = f"did you mean {close[0]}?" if close else "see `campus --help` for the names"
        for section in _SECTIONS:  # a known section's prefix with an unknown key
            if name.startswith(f"CAMPUS_{section.upper()}_"):
                keys = ", ".join(f.name for f in dataclasses.fields(_SECTIONS[section]))
                hint = f"[{section}] has only {keys}" + (
                    f"; did you mean {close[0]}?" if close else ""
                )
        raise ConfigError(f"{name}: unknown setting ({hint})")


def _apply_environ(values: Values, environ: Mapping[str, str]) -> None:
    long_names = _long_names()
    _refuse_unknown(environ, long_names)
    chosen = {name: place for name, place in _SHORT_ENV.items() if name in environ}
    chosen |= {name: long_names[name] for name in sorted(environ) if name in long_names}
    for name, (section, key) in chosen.items():  # short forms first, so long forms win
        kind = _kind(section, key)
        try:
            values[section][key] = Setting(_from_env(kind, environ[name]), Source.ENVIRONMENT, name)
        except ValueError:
            got = show_value(environ[name], key)
            raise ConfigError(f"{name}: expected {_EXPECTED[kind]}, got {got}") from None


def _default(cls: type[Any], name: str) -> Any:
    return getattr(cls(), name)  # default_factory fields included


def _defaults(env_name: str) -> Values:
    values: Values = {
        section: {
            f.name: Setting(_default(cls, f.name), Source.DEFAULT, f"{section}.{f.name} (default)")
            for f in dataclasses.fields(cls)
        }
        for section, cls in _SECTIONS.items()
    }
    if env_name == "production":
        for (section, key), value in PRODUCTION_DEFAULTS.items():
            values[section][key] = Setting(
                value, Source.DEFAULT, f"{section}.{key} (production default)"
            )
    return values


def _early_root(environ: Mapping[str, str], root: str | None) -> str:
    """The root before the file is read: it tells where the default config file is."""
    if root is not None:
        return root
    return environ.get("CAMPUS_SERVER_ROOT", environ.get("CAMPUS_ROOT", "."))


def load(
    *,
    environ: Mapping[str, str],
    env: str | None = None,
    config_file: str | None = None,
    host: str | None = None,
    port: int | None = None,
    root: str | None = None,
    signing: bool = True,
) -> Config:
    """Build the Config; env, config_file, host, port and root are the flags (None: not given).

    ``signing=False`` is for commands that sign no cookie (``users``, ``sessions``): they do
    not need the session secret, so production's secret rules do not apply to them.
    """
    env_at = "--env" if env is not None else "CAMPUS_ENV"
    env_name = env if env is not None else environ.get("CAMPUS_ENV", "development")
    if env_name not in ("development", "production"):
        raise ConfigError(f"{env_at}: expected development or production, got {env_name!r}")
    if config_file is not None:
        path, named_by = config_file, "--config"
    elif environ.get("CAMPUS_CONFIG"):
        path, named_by = environ["CAMPUS_CONFIG"], "CAMPUS_CONFIG"
    else:
        path = os.path.join(_early_root(environ, root), "config", f"{env_name}.toml")
        named_by = None
    values = _defaults(env_name)
    data = _read_toml(path, named_by)
    if data is not None:
        _apply_file(values, path, data)
    _apply_environ(values, environ)
    for key, flag, value in (("host", "--host", host), ("port", "--port", port)):
        if value is not None:
            values["server"][key] = Setting(value, Source.FLAG, flag)
    if root is not None:
        values["server"]["root"] = Setting(root, Source.FLAG, "--root")
    _resolve_paths(values)
    check(values, production=env_name == "production", signing=signing)
    built = {
        name: cls(**{key: setting.value for key, setting in values[name].items()})
        for name, cls in _SECTIONS.items()
    }
    return Config(
        env="production" if env_name == "production" else "development",
        source=None if data is None else os.path.abspath(path),
        **built,
    )


def _resolve_paths(values: Values) -> None:
    """The root from the current directory, the users file from the root: both absolute."""
    root = values["server"]["root"]
    if not root.value:
        raise ConfigError(f"{root.where}: must not be empty")
    absolute = os.path.abspath(os.path.expanduser(root.value))
    if not os.path.isdir(absolute):
        raise ConfigError(f"{root.where}: not a directory: {absolute}")
    values["server"]["root"] = dataclasses.replace(root, value=absolute)
    users = values["users"]["file"]
    if users.value:
        path = os.path.join(absolute, os.path.expanduser(users.value))
        values["users"]["file"] = dataclasses.replace(users, value=os.path.normpath(path))
