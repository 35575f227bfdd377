"""The command line: serve, manage the users file, inspect and revoke sessions.

Every failure is one line on stderr prefixed "campus: " and an exit code (2 for usage and
configuration, 1 for the rest); tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from campus.accounts.edits import check_directory, refuse_existing
from campus.accounts.records import plausible_email
from campus.accounts.users import (
    UsersError,
    add_user,
    normalize_email,
    password_hasher,
    read_records,
    remove_user,
    resolved,
    validate_email,
)
from campus.config import ConfigError, load

if TYPE_CHECKING:
    from campus.config import Config


class CliError(Exception):
    """A failure reported as one line; `code` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so errors stay one line."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see `campus --help`)", code=2)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range 0-65535")
    return port


#: What every change to the users file is followed by (and `users --help` says).
_FOLLOW = "Running servers follow the change within 2 s, without a restart."

_EXAMPLES = """\
examples:
  campus                                   serve (development: memory store, demo account)
  campus --root /opt/campus --port 8001    serve the checkout in /opt/campus
  CAMPUS_ENV=production CAMPUS_SESSION_SECRET=... campus --root /opt/campus
  campus users add ann@example.edu --name Ann --password-stdin < password.txt
  campus users list
  campus users remove ann@example.edu      remove Ann and end her sessions
  campus sessions count                    (Redis store)
  campus sessions revoke ann@example.edu   log Ann out everywhere

environment (flags win over these, these over the config file):
  CAMPUS_ENV       development (default) or production
  CAMPUS_CONFIG    the TOML config file (default: ROOT/config/<env>.toml)
  CAMPUS_ROOT      the directory holding static/, dist/ and config/ (default: .)
  CAMPUS_SESSION_SECRET, CAMPUS_REDIS_URL, CAMPUS_USERS_FILE, CAMPUS_STORE, CAMPUS_HOST,
  CAMPUS_PORT, and CAMPUS_<SECTION>_<KEY> for every key of the config file. Any other
  CAMPUS_* name is refused as a typo.
"""


def _flags(*, server: bool) -> _Parser:
    """The options a command takes: where the config is, and for `serve` where to listen.

    SUPPRESS: a flag absent after the subcommand must not erase one given before it.
    """
    flags = _Parser(add_help=False)
    group = flags.add_argument_group("configuration")
    group.add_argument("--env", default=argparse.SUPPRESS, help="development or production")
    group.add_argument("--config", default=argparse.SUPPRESS, metavar="FILE", help="TOML file")
    group.add_argument(
        "--root", default=argparse.SUPPRESS, metavar="DIR", help="holds static/ dist/ config/"
    )
    if server:
        group.add_argument("--host", default=argparse.SUPPRESS, help="address to listen on")
        group.add_argument(
            "--port", type=_port, default=argparse.SUPPRESS, help="port to listen on"
        )
    return flags


def _parser() -> _Parser:
    serving, managing = _flags(server=True), _flags(server=False)
    parser = _Parser(
        prog="campus",
        parents=[serving],
        description="campus: a Tornado server for a single-page app, with server-side sessions",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"campus {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("serve", parents=[serving], help="run the server (the default)")

    users = commands.add_parser(
        "users",
        help="manage the users file (no secret needed)",
        description=f"Manage the users file. {_FOLLOW}",
    )
    users_do = users.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = users_do.add_parser(
        "add",
        parents=[managing],
        help="add a user (checks the password, hashes it)",
        description=f"Add a user to the users file (the path is printed). {_FOLLOW}",
    )
    add.add_argument("email", help="the login; matched without regard to case")
    add.add_argument("--name", help="a display name, returned with the user")
    add.add_argument(
        "--role", action="append", dest="roles", metavar="ROLE", help="repeat for several"
    )
    add.add_argument("--password-stdin", action="store_true", help="read one line from stdin")
    remove = users_do.add_parser(
        "remove",
        parents=[managing],
        help="remove a user and end their sessions",
        description=f"Remove a user from the users file (the path is printed) and end every"
        f" session of theirs in the Redis store at once. {_FOLLOW}",
    )
    remove.add_argument("email")
    users_do.add_parser("list", parents=[managing], help="list users: email<TAB>name")

    sessions = commands.add_parser(
        "sessions", help="inspect the Redis session store (no secret needed)"
    )
    sessions_do = sessions.add_subparsers(dest="action", metavar="ACTION", required=True)
    sessions_do.add_parser("count", parents=[managing], help="how many sessions are stored")
    revoke = sessions_do.add_parser("revoke", parents=[managing], help="log a user out everywhere")
    revoke.add_argument("email")
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("campus")
    except PackageNotFoundError:  # run from a checkout that was never installed
        import campus.session

        return str(getattr(campus.session, "__version__", "unknown"))


def _config(args: argparse.Namespace) -> Config:
    return load(
        environ=os.environ,
        env=getattr(args, "env", None),
        config_file=getattr(args, "config", None),
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        root=getattr(args, "root", None),
        signing=args.command in (None, "serve"),
    )


def _read_password(from_stdin: bool) -> str:
    """One line from stdin (newline stripped), or two matching prompts without echo."""
    if from_stdin:
        try:
            line = sys.stdin.readline() if sys.stdin else ""  # stdin may be closed
        except UnicodeDecodeError:
            raise CliError("the password on stdin is not valid text") from None
        if not line:
            raise CliError("no password on stdin")
        return line.removesuffix("\n").removesuffix("\r")
    try:
        with warnings.catch_warnings():
            # getpass falls back to echoing on stdin when there is no terminal: refuse.
            warnings.simplefilter("error", getpass.GetPassWarning)
            first = getpass.getpass("Password: ")
            second = getpass.getpass("Repeat password: ")
    except getpass.GetPassWarning:
        raise CliError("no terminal to prompt for a password; use --password-stdin") from None
    except (EOFError, KeyboardInterrupt):
        if sys.stderr.isatty():
            print(file=sys.stderr)  # end the prompt's line
        raise CliError("cancelled") from None
    if first != second:
        raise CliError("passwords do not match")
    return first


def _users(args: argparse.Namespace, config: Config) -> int:
    path = config.users.file
    if args.action == "add":
        email = validate_email(args.email)
        # Before asking for a password: the file must be one that can be written.
        check_directory(path)
        refuse_existing(read_records(path), email, path)
        password = _read_password(args.password_stdin)
        add_user(
            path,
            email,
            password,
            name=args.name,
            roles=args.roles,
            hasher=password_hasher(config.users.argon2),
            min_password_length=config.users.min_password_length,
        )
        print(f"added {email} to {resolved(path)}")
        print(_FOLLOW.lower().rstrip("."))
    elif args.action == "remove":
        key = remove_user(path, args.email)
        print(f"removed {key} from {resolved(path)}")
        print(_end_sessions(config, key))
        print(_FOLLOW.lower().rstrip("."))
    else:
        if not os.path.exists(path):
            print(f"campus: {path} does not exist yet (no users)", file=sys.stderr)
        records = sorted(read_records(path), key=lambda r: normalize_email(r["email"]))
        for record in records:
            name = record.get("name")
            name = " ".join(str(name).split()) if name is not None else ""
            print(f"{record['email']}\t{name}")
    return 0


def _end_sessions(config: Config, key: str) -> str:
    """End every session of a removed user in the store now, if it is one this command can
    reach; what happened, in one line. Either way, running servers end them on reload."""
    from campus.session.store import StoreUnavailable
    from campus.web.services import build_store

    if config.session.store != "redis":
        return (
            "the memory store lives in the server process: the running server ends the"
            " user's sessions within 2 s"
        )

    async def delete() -> int:
        store = build_store(config)
        try:
            return await store.delete_user(key)
        finally:
            await store.close()

    try:
        ended = asyncio.run(delete())
    except StoreUnavailable as err:
        return (
            f"the session store could not be reached ({err}): running servers end the user's"
            " sessions within 2 s"
        )
    return f"ended {ended} session{'' if ended == 1 else 's'} of {key}"


async def _sessions(config: Config, args: argparse.Namespace) -> int:
    from campus.web.services import build_store

    store = build_store(config)
    try:
        if args.action == "count":
            print(await store.count())
        else:
            email = plausible_email(args.email)  # any address a users file may hold
            revoked = await store.delete_user(email)
            print(f"revoked {revoked} session{'' if revoked == 1 else 's'} of {email}")
    finally:
        await store.close()
    return 0


def _run(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.command == "users":
        return _users(args, config)
    if args.command == "sessions":
        from campus.session.store import StoreUnavailable

        if config.session.store != "redis":
            # A new, empty memory store here would answer "0" and "revoked 0": a lie.
            raise CliError(
                "sessions commands need the redis store; the memory store lives inside the"
                " one server process that holds it (restart that process to drop its sessions)"
            )
        try:
            return asyncio.run(_sessions(config, args))
        except StoreUnavailable as err:
            raise CliError(f"session store unavailable: {err}") from None
    from campus.runtime.serve import serve

    code: int = serve(config)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m campus` and the `campus` script; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
        return _run(args)
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else 0
    except CliError as err:
        return _fail(str(err), err.code)
    except ConfigError as err:
        return _fail(str(err), 2)
    except UsersError as err:
        return _fail(str(err), 1)
    except KeyboardInterrupt:
        return _fail("interrupted", 1)
    except BrokenPipeError:  # `campus users list | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _fail(message: str, code: int) -> int:
    print("campus:", " ".join(message.split()), file=sys.stderr)  # always one line
    return code
