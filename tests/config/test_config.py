"""campus.config: precedence, parsing, validation, and one-line errors that keep secrets."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from campus.config import DEV_SECRET, Config, ConfigError, load
from tests.support.servers import REPO

GOOD = "g" * 40  # a production-worthy secret
OTHER = "o" * 48


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in an empty directory, so the repository's own config/ is never read by accident."""
    monkeypatch.chdir(tmp_path)


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def error(**kwargs: Any) -> str:
    """The message of the ConfigError that load(**kwargs) must raise."""
    kwargs.setdefault("environ", {})
    with pytest.raises(ConfigError) as info:
        load(**kwargs)
    message = str(info.value)
    assert "\n" not in message and message
    return message


# --- defaults and precedence -------------------------------------------------------------


def resolved(config: Config, root: Path) -> Config:
    """*config* with the root and the users file as load() makes them: absolute."""
    return dataclasses.replace(
        config,
        server=dataclasses.replace(config.server, root=str(root)),
        users=dataclasses.replace(config.users, file=str(root / config.users.file)),
    )


def test_defaults_without_any_file(tmp_path: Path) -> None:
    config = load(environ={})
    assert config == resolved(Config(), tmp_path)
    assert config.env == "development" and not config.production and config.source is None
    assert config.server.host == "127.0.0.1" and config.server.port == 8000
    assert config.session.secret == (DEV_SECRET,) and len(DEV_SECRET) >= 32
    assert config.session.store == "memory" and config.session.secure == "auto"


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        load(environ={}).server.port = 1  # type: ignore[misc]


def test_secrets_stay_out_of_repr() -> None:
    environ = {"CAMPUS_SESSION_SECRET": GOOD, "CAMPUS_EXPRESS_SECRETS": OTHER}
    config = load(environ={**environ, "CAMPUS_STORE": "redis"})  # the cut-over needs Redis
    assert GOOD not in repr(config) and OTHER not in repr(config)


def test_default_file_follows_env(tmp_path: Path) -> None:
    write(tmp_path / "config/development.toml", "[server]\nport = 1111\n")
    write(tmp_path / "config/production.toml", "[server]\nport = 2222\n")
    assert load(environ={}).server.port == 1111
    assert load(environ={}).source == str(tmp_path / "config/development.toml")
    prod = load(environ={"CAMPUS_ENV": "production", "CAMPUS_SESSION_SECRET": GOOD})
    assert prod.production and prod.server.port == 2222
    assert prod.source == str(tmp_path / "config/production.toml")
    assert load(environ={"CAMPUS_ENV": "production"}, env="development").server.port == 1111


def test_config_flag_beats_campus_config_beats_default(tmp_path: Path) -> None:
    write(tmp_path / "config/development.toml", "[server]\nport = 1\n")
    env_file = write(tmp_path / "env.toml", "[server]\nport = 2\n")
    flag_file = write(tmp_path / "flag.toml", "[server]\nport = 3\n")
    assert load(environ={"CAMPUS_CONFIG": env_file}).server.port == 2
    assert load(environ={"CAMPUS_CONFIG": env_file}, config_file=flag_file).server.port == 3


@pytest.mark.parametrize("layers", [0, 1, 2, 3])
def test_each_level_beats_the_next(tmp_path: Path, layers: int) -> None:
    """Defaults < file < environment < flags, for host, port and a nested key."""
    path = write(
        tmp_path / "c.toml",
        '[server]\nhost = "10.0.0.1"\nport = 1111\n[session]\nidle_timeout = 111\n',
    )
    environ = {"CAMPUS_HOST": "10.0.0.2", "CAMPUS_PORT": "2222"}
    environ["CAMPUS_SESSION_IDLE_TIMEOUT"] = "222"
    flags: dict[str, Any] = {"host": "10.0.0.3", "port": 3333}
    config = load(
        environ=environ if layers >= 2 else {},
        config_file=path if layers >= 1 else None,
        **(flags if layers >= 3 else {}),
    )
    expected = [("127.0.0.1", 8000), ("10.0.0.1", 1111), ("10.0.0.2", 2222), ("10.0.0.3", 3333)]
    assert (config.server.host, config.server.port) == expected[layers]
    assert config.session.idle_timeout == [1800, 111, 222, 222][layers]


@pytest.mark.parametrize(
    ("variable", "value", "section", "key", "expected"),
    [
        ("CAMPUS_HOST", "0.0.0.0", "server", "host", "0.0.0.0"),
        ("CAMPUS_PORT", "9000", "server", "port", 9000),
        ("CAMPUS_STORE", "redis", "session", "store", "redis"),
        ("CAMPUS_SESSION_SECRET", GOOD, "session", "secret", (GOOD,)),
        ("CAMPUS_REDIS_URL", "rediss://db:6380/2", "redis", "url", "rediss://db:6380/2"),
        ("CAMPUS_USERS_FILE", "/srv/users.json", "users", "file", "/srv/users.json"),
        ("CAMPUS_SERVER_TRUST_PROXY", "true", "server", "trust_proxy", True),
        ("CAMPUS_REDIS_TIMEOUT", "0.25", "redis", "timeout", 0.25),
        ("CAMPUS_LOGIN_WINDOW", "60", "login", "window", 60),
    ],
)
def test_environment_forms(
    variable: str, value: str, section: str, key: str, expected: object
) -> None:
    config = load(environ={variable: value})
    assert getattr(getattr(config, section), key) == expected


@pytest.mark.parametrize(
    ("short", "long", "attribute"),
    [
        ("CAMPUS_HOST", "CAMPUS_SERVER_HOST", ("server", "host")),
        ("CAMPUS_PORT", "CAMPUS_SERVER_PORT", ("server", "port")),
        ("CAMPUS_STORE", "CAMPUS_SESSION_STORE", ("session", "store")),
    ],
)
def test_long_form_beats_short_form(short: str, long: str, attribute: tuple[str, str]) -> None:
    values = {"CAMPUS_HOST": ("h1", "h2"), "CAMPUS_PORT": ("1", "2")}
    values["CAMPUS_STORE"] = ("memory", "redis")
    short_value, long_value = values[short]
    config = load(environ={short: short_value, long: long_value})
    got = getattr(getattr(config, attribute[0]), attribute[1])
    assert str(got) == long_value


def test_secret_list_first_signs() -> None:
    config = load(environ={"CAMPUS_SESSION_SECRET": f" {GOOD} , {OTHER} ,"})
    assert config.session.secret == (GOOD, OTHER)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        ("https://a.example", ("https://a.example",)),
        (
            " https://a.example , ,http://b.example:8080,",
            ("https://a.example", "http://b.example:8080"),
        ),
        ("HTTPS://A.Example", ("https://a.example",)),  # browsers send origins in lower case
    ],
)
def test_list_parsing(text: str, expected: tuple[str, ...]) -> None:
    config = load(environ={"CAMPUS_SERVER_ALLOWED_ORIGINS": text})
    assert config.server.allowed_origins == expected


@pytest.mark.parametrize("word", ["true", "TRUE", "1", "yes", "On", " on "])
def test_bool_true_words(word: str) -> None:
    assert load(environ={"CAMPUS_SESSION_SAVE_UNINITIALIZED": word}).session.save_uninitialized


@pytest.mark.parametrize("word", ["false", "False", "0", "no", "OFF"])
def test_bool_false_words(word: str) -> None:
    assert not load(environ={"CAMPUS_SESSION_ROLLING": word}).session.rolling


@pytest.mark.parametrize(("word", "expected"), [("auto", "auto"), ("AUTO", "auto"), ("yes", True)])
def test_secure_accepts_auto(word: str, expected: object) -> None:
    assert load(environ={"CAMPUS_SESSION_SECURE": word}).session.secure == expected


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("CAMPUS_SESSION_ROLLING", "maybe", "a boolean"),
        ("CAMPUS_SESSION_ROLLING", "", "a boolean"),
        ("CAMPUS_SESSION_IDLE_TIMEOUT", "abc", "an integer, got 'abc'"),
        ("CAMPUS_SESSION_IDLE_TIMEOUT", "1.5", "an integer"),
        ("CAMPUS_SESSION_IDLE_TIMEOUT", "1e3", "an integer"),
        ("CAMPUS_SESSION_IDLE_TIMEOUT", "1_000", "an integer"),
        ("CAMPUS_SESSION_IDLE_TIMEOUT", "\u0663", "an integer"),  # an Arabic-Indic digit
        ("CAMPUS_PORT", "80x", "an integer"),
        ("CAMPUS_REDIS_TIMEOUT", "fast", "a number"),
        ("CAMPUS_REDIS_TIMEOUT", "inf", "a number"),
        ("CAMPUS_REDIS_TIMEOUT", "nan", "a number"),
        ("CAMPUS_SESSION_SECURE", "sometimes", 'true, false or "auto"'),
    ],
)
def test_environment_values_parse_strictly(variable: str, value: str, expected: str) -> None:
    message = error(environ={variable: value})
    assert message.startswith(f"{variable}: expected ")
    assert expected in message


def test_unknown_key_in_known_section_is_an_error() -> None:
    message = error(environ={"CAMPUS_SESSION_IDLE_TIMOUT": "600"})
    assert message.startswith("CAMPUS_SESSION_IDLE_TIMOUT:")
    assert "idle_timeout" in message  # the message lists the real keys


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("CAMPUS_SESION_SECRET", "did you mean CAMPUS_SESSION_SECRET?"),
        ("CAMPUS_CONFIGS", "did you mean CAMPUS_CONFIG?"),
        ("CAMPUS_FOO_BAR", "campus --help"),
        ("CAMPUS_SERVERX", "did you mean"),
        ("CAMPUS_REDIS_URI", "did you mean CAMPUS_REDIS_URL?"),
    ],
)
def test_every_unknown_campus_variable_is_an_error(name: str, hint: str) -> None:
    message = error(environ={name: "x"})
    assert message.startswith(f"{name}: unknown setting") and hint in message


def test_variables_outside_campus_are_ignored() -> None:
    assert load(environ={"CAMPUSX": "1", "HOME": "/root", "campus_env": "x"}).env == "development"


@pytest.mark.parametrize(
    ("env", "environ", "prefix"),
    [("staging", {}, "--env:"), (None, {"CAMPUS_ENV": "prod"}, "CAMPUS_ENV:")],
)
def test_bad_env_name(env: str | None, environ: dict[str, str], prefix: str) -> None:
    assert error(environ=environ, env=env).startswith(prefix)


# --- the config file ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[sesion]\nstore = 'redis'\n", "sesion"),
        ("[session]\nstroe = 'redis'\n", "session.stroe"),
        ("port = 8000\n", "port"),
        ("[session.extra]\nx = 1\n", "session.extra"),
    ],
)
def test_unknown_section_or_key_in_file(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path / "c.toml", text)
    assert error(config_file=path).startswith(f"{path}: {key}: unknown")


@pytest.mark.parametrize(
    ("line", "key", "expected"),
    [
        ("[session]\nidle_timeout = 'abc'", "session.idle_timeout", "an integer, got 'abc'"),
        ("[session]\nidle_timeout = true", "session.idle_timeout", "an integer, got true"),
        ("[server]\nport = 80.0", "server.port", "an integer"),
        ("[server]\ntrust_proxy = 1", "server.trust_proxy", "a boolean, got 1"),
        ("[server]\ntrust_proxy = 'yes'", "server.trust_proxy", "a boolean"),
        ("[server]\nallowed_origins = 'https://a.example'", "server.allowed_origins", "a list"),
        ("[server]\nallowed_origins = [1]", "server.allowed_origins", "a list of strings"),
        ("[redis]\ntimeout = true", "redis.timeout", "a number"),
        ("[redis]\ntimeout = inf", "redis.timeout", "a number"),
        ("[redis]\ntimeout = nan", "redis.timeout", "a number"),
        ("[redis]\nurl = 6379", "redis.url", "a string"),
        ("[session]\nsecure = 'yes'", "session.secure", 'true, false or "auto"'),
        ("[session]\nsecret = 12345", "session.secret", "a string or a list of strings"),
        ("[session]\nsecret = ['a', 2]", "session.secret", "a string or a list of strings"),
        ("[login]\nwindow = 1979-05-27", "login.window", "an integer"),
    ],
)
def test_wrong_types_in_file(tmp_path: Path, line: str, key: str, expected: str) -> None:
    path = write(tmp_path / "c.toml", line + "\n")
    message = error(config_file=path)
    assert message.startswith(f"{path}: {key}: expected ")
    assert expected in message


def test_right_types_in_file(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.toml",
        f'[redis]\ntimeout = 2\n[session]\nsecret = "{GOOD}"\nsecure = true\n'
        f'same_site = "Strict"\nstore = "redis"\n[express]\nsecrets = ["{OTHER}"]\n',
    )
    config = load(environ={}, config_file=path)
    assert config.redis.timeout == 2.0 and isinstance(config.redis.timeout, float)
    assert config.session.secret == (GOOD,) and config.session.secure is True
    assert config.session.same_site == "strict"
    assert config.express.secrets == (OTHER,)
    assert config.source == path


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", '[server]\nhost = "a"\nport = \n')
    message = error(config_file=path)
    assert message.startswith(f"{path}: invalid TOML:")
    assert "line 3" in message


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(b'[server]\nhost = "\xff"\n')
    assert error(config_file=str(path)).startswith(f"{path}: invalid TOML")


@pytest.mark.parametrize("how", ["flag", "environ"])
def test_explicit_missing_file_is_an_error(tmp_path: Path, how: str) -> None:
    missing = str(tmp_path / "nope.toml")
    if how == "flag":
        message = error(config_file=missing)
        assert "--config" in message
    else:
        message = error(environ={"CAMPUS_CONFIG": missing})
        assert "CAMPUS_CONFIG" in message
    assert message.startswith(f"{missing}: config file not found")


def test_default_missing_file_means_the_envs_defaults() -> None:
    config = load(environ={"CAMPUS_SESSION_SECRET": GOOD})
    assert config.source is None and config.session.store == "memory"
    assert config.session.secure == "auto"


def test_production_without_any_file_is_still_production() -> None:
    """Production's meaning is built in: no file found is never development's memory store."""
    config = load(environ={"CAMPUS_ENV": "production", "CAMPUS_SESSION_SECRET": GOOD})
    assert config.source is None
    assert config.session.store == "redis" and config.session.secure is True
    assert config.users.file == "/etc/campus/users.json"
    # Set explicitly, they hold (production with the memory store starts, with a warning).
    environ = {"CAMPUS_ENV": "production", "CAMPUS_SESSION_SECRET": GOOD, "CAMPUS_STORE": "memory"}
    assert load(environ=environ).session.store == "memory"


# --- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "prefix", "expected"),
    [
        ({"CAMPUS_PORT": "70000"}, "CAMPUS_PORT:", "0..65535"),
        ({"CAMPUS_PORT": "-1"}, "CAMPUS_PORT:", "0..65535"),
        ({"CAMPUS_SESSION_IDLE_TIMEOUT": "0"}, "CAMPUS_SESSION_IDLE_TIMEOUT:", "positive"),
        ({"CAMPUS_SESSION_ABSOLUTE_TIMEOUT": "-5"}, "CAMPUS_SESSION_ABSOLUTE_TIMEOUT:", "positive"),
        ({"CAMPUS_SESSION_MAX_SESSIONS": "0"}, "CAMPUS_SESSION_MAX_SESSIONS:", "positive"),
        ({"CAMPUS_LOGIN_MAX_FAILURES": "0"}, "CAMPUS_LOGIN_MAX_FAILURES:", "positive"),
        ({"CAMPUS_LOGIN_WINDOW": "0"}, "CAMPUS_LOGIN_WINDOW:", "positive"),
        ({"CAMPUS_REDIS_TIMEOUT": "0"}, "CAMPUS_REDIS_TIMEOUT:", "positive"),
        ({"CAMPUS_STORE": "disk"}, "CAMPUS_STORE:", "memory or redis"),
        ({"CAMPUS_SESSION_SAME_SITE": "loose"}, "CAMPUS_SESSION_SAME_SITE:", "strict, lax or none"),
        ({"CAMPUS_REDIS_URL": "http://db:6379"}, "CAMPUS_REDIS_URL:", "scheme"),
        ({"CAMPUS_REDIS_URL": "localhost:6379"}, "CAMPUS_REDIS_URL:", "scheme"),
        ({"CAMPUS_SESSION_COOKIE_NAME": ""}, "CAMPUS_SESSION_COOKIE_NAME:", "cookie name"),
        ({"CAMPUS_SESSION_COOKIE_NAME": "a b"}, "CAMPUS_SESSION_COOKIE_NAME:", "cookie name"),
        ({"CAMPUS_SESSION_COOKIE_NAME": "a;b=c"}, "CAMPUS_SESSION_COOKIE_NAME:", "cookie name"),
        ({"CAMPUS_EXPRESS_COOKIE_NAME": "x,y"}, "CAMPUS_EXPRESS_COOKIE_NAME:", "cookie name"),
        ({"CAMPUS_SESSION_DOMAIN": "a.example; x"}, "CAMPUS_SESSION_DOMAIN:", "host name"),
        ({"CAMPUS_SERVER_ALLOWED_ORIGINS": "https://a.example/"}, "CAMPUS_SERVER_", "scheme://"),
        ({"CAMPUS_USERS_FILE": ""}, "CAMPUS_USERS_FILE:", "empty"),
        ({"CAMPUS_LOGIN_IPV6_PREFIX": "0"}, "CAMPUS_LOGIN_IPV6_PREFIX:", "32..128"),
        ({"CAMPUS_LOGIN_IPV6_PREFIX": "129"}, "CAMPUS_LOGIN_IPV6_PREFIX:", "32..128"),
        ({"CAMPUS_SESSION_SECRET": ""}, "CAMPUS_SESSION_SECRET:", "at least one secret"),
    ],
)
def test_validation(environ: dict[str, str], prefix: str, expected: str) -> None:
    message = error(environ=environ)
    assert message.startswith(prefix)
    assert expected in message


def test_validation_names_the_file_key(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "[session]\nidle_timeout = -1\n")
    assert error(config_file=path) == f"{path}: session.idle_timeout: must be positive, got -1"


def test_port_flag_is_validated_and_zero_allowed() -> None:
    assert error(port=65536).startswith("--port:")
    assert load(environ={}, port=0).server.port == 0


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://:pw@db:6380/1",
        "unix:///run/redis.sock",
        "redis+sentinel://s1:26379,s2:26379,s3/mymaster/0",
        "redis+sentinel://:pw@[::1]:26379/mymaster",
        "redis+cluster://n1:7000,n2:7001,n3",
    ],
)
def test_redis_url_schemes(url: str) -> None:
    assert load(environ={"CAMPUS_REDIS_URL": url}).redis.url == url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis+sentinel://s1:26379", "service_name"),
        ("redis+sentinel://s1:26379/mymaster/zero", "database must be a number"),
        ("redis+sentinel://:tiny-secret-value@s1:notaport/m", "bad port"),
        ("redis+cluster://n1:7000/1", "only database 0"),
        ("redis+cluster://n1:7000,,n2", "needs a host"),
        ("redis+shard://n1", "scheme must be"),
    ],
)
def test_bad_sentinel_and_cluster_urls(url: str, expected: str) -> None:
    message = error(environ={"CAMPUS_REDIS_URL": url})
    assert message.startswith("CAMPUS_REDIS_URL:") and expected in message
    assert "tiny-secret-value" not in message


def test_empty_secret_in_a_file_list(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", f'[session]\nsecret = ["{GOOD}", ""]\n')
    assert error(config_file=path) == f"{path}: session.secret: a secret is empty"
    path = write(tmp_path / "e.toml", '[express]\nsecrets = [""]\n')
    assert error(config_file=path).startswith(f"{path}: express.secrets:")


# --- production secrets ------------------------------------------------------------------

PRODUCTION_LINE = (
    "production needs CAMPUS_SESSION_SECRET: at least 32 characters, not the development default"
)


@pytest.mark.parametrize(
    "secret",
    [None, DEV_SECRET, "short-secret", f"{GOOD},short-secret", f"{GOOD},{DEV_SECRET}"],
)
def test_production_refuses_bad_secrets(secret: str | None) -> None:
    environ = {"CAMPUS_ENV": "production"}
    if secret is not None:
        environ["CAMPUS_SESSION_SECRET"] = secret
    message = error(environ=environ)
    assert message.startswith(PRODUCTION_LINE)
    for part in filter(None, (secret or "").split(",")):
        assert part not in message


def test_production_refuses_dev_secret_from_a_file(tmp_path: Path) -> None:
    path = write(tmp_path / "p.toml", f'[session]\nsecret = "{DEV_SECRET}"\n')
    message = error(environ={"CAMPUS_ENV": "production"}, config_file=path)
    assert message.startswith(PRODUCTION_LINE) and path in message
    assert DEV_SECRET not in message


def test_production_accepts_two_long_secrets_first_signs() -> None:
    config = load(environ={"CAMPUS_SESSION_SECRET": f"{GOOD},{OTHER}"}, env="production")
    assert config.production and config.session.secret == (GOOD, OTHER)
    assert config.session.secret[0] == GOOD


# --- cookie rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "prefix"),
    [
        ({"CAMPUS_SESSION_COOKIE_NAME": "__Host-sid"}, "CAMPUS_SESSION_COOKIE_NAME:"),
        (
            {"CAMPUS_SESSION_COOKIE_NAME": "__Host-sid", "CAMPUS_SESSION_SECURE": "false"},
            "CAMPUS_SESSION_COOKIE_NAME:",
        ),
        (
            {
                "CAMPUS_SESSION_COOKIE_NAME": "__Host-sid",
                "CAMPUS_SESSION_SECURE": "true",
                "CAMPUS_SESSION_DOMAIN": "a.example",
            },
            "CAMPUS_SESSION_COOKIE_NAME:",
        ),
        ({"CAMPUS_SESSION_COOKIE_NAME": "__Secure-sid"}, "CAMPUS_SESSION_COOKIE_NAME:"),
        ({"CAMPUS_SESSION_SAME_SITE": "none"}, "CAMPUS_SESSION_SAME_SITE:"),
        (
            {"CAMPUS_SESSION_SAME_SITE": "None", "CAMPUS_SESSION_SECURE": "false"},
            "CAMPUS_SESSION_SAME_SITE:",
        ),
    ],
)
def test_cookie_rules_refuse(environ: dict[str, str], prefix: str) -> None:
    assert error(environ=environ).startswith(prefix)


@pytest.mark.parametrize(
    "environ",
    [
        {"CAMPUS_SESSION_COOKIE_NAME": "__Host-sid", "CAMPUS_SESSION_SECURE": "true"},
        {
            "CAMPUS_SESSION_COOKIE_NAME": "__Secure-sid",
            "CAMPUS_SESSION_SECURE": "true",
            "CAMPUS_SESSION_DOMAIN": "a.example",
        },
        {"CAMPUS_SESSION_SAME_SITE": "none", "CAMPUS_SESSION_SECURE": "true"},
    ],
)
def test_cookie_rules_accept(environ: dict[str, str]) -> None:
    load(environ=environ)


def test_cookie_rule_names_where_secure_came_from(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", '[session]\nsecure = false\nsame_site = "none"\n')
    message = error(config_file=path)
    assert message.startswith(f"{path}: session.same_site: SameSite=None needs session.secure")
    assert f"({path}: session.secure)" in message


# --- messages never carry secrets --------------------------------------------------------


@pytest.mark.parametrize(
    "environ",
    [
        {"CAMPUS_ENV": "production", "CAMPUS_SESSION_SECRET": "tiny-secret-value"},
        {"CAMPUS_ENV": "production", "CAMPUS_SESSION_SECRET": f"{GOOD},tiny-secret-value"},
        {"CAMPUS_SESSION_SECRET": "tiny-secret-value", "CAMPUS_PORT": "x"},
        {"CAMPUS_EXPRESS_SECRETS": "tiny-secret-value,,", "CAMPUS_SESSION_SAME_SITE": "none"},
        {"CAMPUS_REDIS_URL": "http://:tiny-secret-value@db:6379/0"},
    ],
)
def test_errors_never_show_secrets(environ: dict[str, str]) -> None:
    message = error(environ=environ)
    assert "tiny-secret-value" not in message and GOOD not in message


def test_file_type_errors_never_show_secrets(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", '[session]\nsecret = ["tiny-secret-value", 1]\n')
    assert "tiny-secret-value" not in error(config_file=path)
    path = write(tmp_path / "d.toml", '[express]\nsecrets = {value = "tiny-secret-value"}\n')
    assert "tiny-secret-value" not in error(config_file=path)


# --- the shipped files -------------------------------------------------------------------


def test_shipped_development_file_parses() -> None:
    path = str(REPO / "config/development.toml")
    config = load(environ={}, config_file=path)
    # It spells out the defaults (relative to the root: here the current directory).
    assert config == dataclasses.replace(load(environ={}), source=path)


def test_shipped_production_file_parses() -> None:
    path = str(REPO / "config/production.toml")
    config = load(environ={"CAMPUS_SESSION_SECRET": GOOD}, env="production", config_file=path)
    assert config.session.store == "redis" and config.session.secure is True
    assert config.users.file == "/etc/campus/users.json"
    assert config.redis.url == "redis://127.0.0.1:6379/0"
    assert error(env="production", config_file=path).startswith(PRODUCTION_LINE)


def test_shipped_env_example_needs_only_a_secret() -> None:
    environ: dict[str, str] = {}
    for line in (REPO / "config/campus.env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            environ[name] = value
    assert environ["CAMPUS_ENV"] == "production"
    production = str(REPO / "config/production.toml")
    assert error(environ=environ, config_file=production).startswith(PRODUCTION_LINE)
    config = load(environ={**environ, "CAMPUS_SESSION_SECRET": GOOD}, config_file=production)
    assert config.production and config.users.file == environ["CAMPUS_USERS_FILE"]


# --- the root, and paths under it ---------------------------------------------------------


def test_root_locates_the_default_config_file_and_the_users_file(tmp_path: Path) -> None:
    site = tmp_path / "site"
    write(site / "config/development.toml", '[server]\nport = 1234\n[users]\nfile = "u.json"\n')
    for config in (
        load(environ={}, root=str(site)),
        load(environ={"CAMPUS_ROOT": str(site)}),
        load(environ={"CAMPUS_SERVER_ROOT": str(site)}),
    ):
        assert config.server.root == str(site) and config.server.port == 1234
        assert config.source == str(site / "config/development.toml")
        assert config.users.file == str(site / "u.json")


def test_relative_root_is_taken_from_the_current_directory(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    config = load(environ={"CAMPUS_ROOT": "site"})
    assert config.server.root == str(tmp_path / "site")
    assert config.users.file == str(tmp_path / "site/config/users.dev.json")


def test_absolute_users_file_stays_as_it_is(tmp_path: Path) -> None:
    config = load(environ={"CAMPUS_USERS_FILE": "/srv/users.json", "CAMPUS_ROOT": str(tmp_path)})
    assert config.users.file == "/srv/users.json"


def test_flag_root_beats_environment(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    config = load(environ={"CAMPUS_ROOT": str(tmp_path / "a")}, root=str(tmp_path / "b"))
    assert config.server.root == str(tmp_path / "b")


def test_root_must_be_a_directory(tmp_path: Path) -> None:
    assert error(root=str(tmp_path / "nowhere")).startswith("--root: not a directory")
    assert error(environ={"CAMPUS_ROOT": ""}).startswith("CAMPUS_ROOT: must not be empty")


# --- further keys ---------------------------------------------------------------------------


def test_argon2_parameters_from_a_table_and_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "[users]\nargon2 = { memory_kib = 19456, time_cost = 2 }\n")
    params = load(environ={}, config_file=path).users.argon2
    assert (params.memory_kib, params.time_cost, params.parallelism) == (19456, 2, 4)
    environ = {"CAMPUS_USERS_ARGON2": "memory_kib=8, time_cost=1, parallelism=1"}
    params = load(environ=environ).users.argon2
    assert (params.memory_kib, params.time_cost, params.parallelism) == (8, 1, 1)


@pytest.mark.parametrize(
    "value", ["memory_kib=0", "memory=8", "time_cost=x", "", "parallelism=2,memory_kib=8"]
)
def test_bad_argon2_parameters(value: str) -> None:
    message = error(environ={"CAMPUS_USERS_ARGON2": value})
    assert message.startswith("CAMPUS_USERS_ARGON2:")


@pytest.mark.parametrize(
    ("value", "ok"), [("8", True), ("7", False), ("1024", True), ("1025", False)]
)
def test_min_password_length_bounds(value: str, ok: bool) -> None:
    environ = {"CAMPUS_USERS_MIN_PASSWORD_LENGTH": value}
    if ok:
        assert load(environ=environ).users.min_password_length == int(value)
    else:
        assert "8..1024" in error(environ=environ)


def test_log_and_metrics_keys() -> None:
    config = load(environ={"CAMPUS_LOG_FORMAT": "json", "CAMPUS_METRICS_TOKEN": "t" * 20})
    assert config.log.format == "json" and config.metrics.token == "t" * 20
    assert "t" * 20 not in repr(config)
    assert "text or json" in error(environ={"CAMPUS_LOG_FORMAT": "xml"})


def test_several_processes_need_redis() -> None:
    message = error(environ={"CAMPUS_SERVER_PROCESSES": "2"})
    assert message.startswith("CAMPUS_SERVER_PROCESSES:") and "redis" in message
    environ = {"CAMPUS_SERVER_PROCESSES": "2", "CAMPUS_STORE": "redis"}
    assert load(environ=environ).server.processes == 2


def test_commands_that_sign_nothing_need_no_secret() -> None:
    environ = {"CAMPUS_ENV": "production"}
    assert error(environ=environ).startswith(PRODUCTION_LINE)
    config = load(environ=environ, signing=False)
    assert config.production and config.session.store == "redis"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:99999/0", "port out of range"),
        ("redis://[::1", "bad ipv6 address"),
        ("redis://:tiny-secret-value@db:0/0", "bad port"),
        ("redis://db/zero", "database must be a number"),
        ("redis://db/0/1", "database number only"),
        ("redis://", "host"),
        ("unix://", "unix:///path"),
    ],
)
def test_malformed_single_server_urls(url: str, expected: str) -> None:
    message = error(environ={"CAMPUS_REDIS_URL": url})
    assert message.startswith("CAMPUS_REDIS_URL:") and expected in message.lower()
    assert "tiny-secret-value" not in message


# --- device binding ----------------------------------------------------------------------


def test_device_binding_is_optional_by_default_and_takes_the_three_modes(tmp_path: Path) -> None:
    assert load(environ={}).session.device_binding == "optional"
    production = load(environ={}, env="production", signing=False)
    assert production.session.device_binding == "optional"
    for mode in ("off", "Optional", "REQUIRED"):
        environ = {"CAMPUS_SESSION_DEVICE_BINDING": mode}
        assert load(environ=environ).session.device_binding == mode.lower()
    path = write(tmp_path / "c.toml", '[session]\ndevice_binding = "required"\n')
    assert load(environ={}, config_file=path).session.device_binding == "required"


def test_a_device_binding_mode_that_does_not_exist_is_one_line(tmp_path: Path) -> None:
    message = error(environ={"CAMPUS_SESSION_DEVICE_BINDING": "always"})
    assert message == (
        "CAMPUS_SESSION_DEVICE_BINDING: must be off, optional or required, got 'always'"
    )
    path = write(tmp_path / "c.toml", "[session]\ndevice_binding = true\n")
    assert error(config_file=path).startswith(f"{path}: session.device_binding: expected ")
