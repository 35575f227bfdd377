"""A Python that sees the standard library, this checkout's campus and the named packages only.

How campus.session behaves installed without the server's packages, or without one of its
own optional ones (orjson, hiredis), without building a virtualenv: a directory holding links
to exactly those distributions (and what they require) is the whole of ``sys.path`` besides
the standard library (``python -I -S``: no site-packages, no PYTHONPATH, no user site).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.servers import REPO

#: Appended to the code run: the top-level modules it loaded beyond the standard library.
REPORT_IMPORTS = """
import sys as _sys
print(sorted({_m.partition(".")[0] for _m in _sys.modules}
             - set(_sys.stdlib_module_names) - {"__main__", "__mp_main__", "campus"}))
"""


def site_with(directory: Path, *distributions: str) -> Path:
    """A directory of links to campus and to *distributions* as they are installed here, with
    what each requires (its extras left out: ``redis`` without ``hiredis``)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "campus").symlink_to(REPO / "campus")
    modules_of: dict[str, set[str]] = {}
    for module, owners in importlib.metadata.packages_distributions().items():
        for owner in owners:
            modules_of.setdefault(canonicalize_name(owner), set()).add(module)
    wanted, seen = list(distributions), set()
    while wanted:
        name = canonicalize_name(wanted.pop())
        if name in seen:
            continue
        seen.add(name)
        for module in modules_of[name]:
            spec = importlib.util.find_spec(module)
            assert spec is not None and spec.origin is not None, f"{module} is not installed"
            origin = Path(spec.origin)
            source = origin.parent if spec.submodule_search_locations else origin
            (directory / source.name).symlink_to(source)
        for line in importlib.metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                wanted.append(requirement.name)
    return directory


def run_with(
    site: Path, code: str, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run *code* (then REPORT_IMPORTS) in a Python whose only non-standard path is *site*."""
    prologue = f"import sys; sys.path.insert(0, {str(site)!r})\n"
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", prologue + code + REPORT_IMPORTS, *args],
        cwd=site,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
