"""``python -m campus`` and the ``campus`` command.

campus.session installs without the server's packages (``pip install campus``); the server
needs them too (``pip install 'campus[server]'``). Without them the command says so in one
line instead of an ImportError's traceback.
"""

import sys


def run() -> int:
    try:
        from campus.cli import main

        return main()
    except ModuleNotFoundError as exc:
        if not exc.name or exc.name.partition(".")[0] == "campus":
            raise  # a bug of ours, not a missing package
        print(
            f"campus: the server needs packages that are not installed (no module {exc.name!r}):"
            " pip install 'campus[server]', or in a checkout pip install -r requirements.txt",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(run())
