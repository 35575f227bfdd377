"""A Python that sees the standard library, this checkout's campus and the named packages only.

How campus.session behaves installed without the server's packages, or without one of its
own optional ones (orjson, hiredis), without building a virtualenv: a directory holding links
to exactly those packages is the whole of ``sys.path`` besides the standard library
(``python -I -S``: no site-packages, no PYTHONPATH, no user site).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from tests.support.servers import REPO

#: Appended to the code run: the top-level modules it loaded beyond the standard library.
REPORT_IMPORTS = """
import sys as _sys
print(sorted({_m.partition(".")[0] for _m in _sys.modules}
             - set(_sys.stdlib_module_names) - {"__main__", "__mp_main__", "campus"}))
"""


def site_with(directory: Path, *packages: str) -> Path:
    """A directory of links to campus and *packages* (import names), as they are installed."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "campus").symlink_to(REPO / "campus")
    for name in packages:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, f"{name} is not installed"
        origin = Path(spec.origin)
        source = origin.parent if spec.submodule_search_locations else origin
        (directory / source.name).symlink_to(source)
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
