"""campus's build backend: setuptools', except that it never writes into the SPA's dist/.

``python -m build`` writes into ./dist unless told otherwise, and here ./dist is the built
single-page app, whose files the server hands out. So building there is refused, with the
command to use instead: ``python -m build --outdir build/packages``. pyproject.toml names
this module (``backend-path``); every other hook is setuptools' own, unchanged.
"""

from __future__ import annotations

import os
from typing import Any

from setuptools import build_meta as setuptools_backend
from setuptools.build_meta import *  # noqa: F403  (the hooks not overridden below)

INSTEAD = "python -m build --outdir build/packages"


def refuse_the_spa_folder(directory: str) -> None:
    """The backend runs in the project's root: its dist/ is the SPA's."""
    if os.path.realpath(directory) == os.path.realpath("dist"):
        raise SystemExit(f"campus: dist/ holds the single-page app, not packages: {INSTEAD}")


def build_wheel(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    refuse_the_spa_folder(wheel_directory)
    name: str = setuptools_backend.build_wheel(wheel_directory, config_settings, metadata_directory)
    return name


def build_sdist(sdist_directory: str, config_settings: dict[str, Any] | None = None) -> str:
    refuse_the_spa_folder(sdist_directory)
    name: str = setuptools_backend.build_sdist(sdist_directory, config_settings)
    return name
