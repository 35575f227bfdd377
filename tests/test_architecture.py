"""The packages of campus import one way: each only from those below it.

    session < config < observability < http < accounts < web < runtime < the entries

``campus.session`` is a library of its own and imports nothing else of campus. A package may
import from its own package and from any package lower in the list; an import against the
direction is a failure naming the module and the line.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import campus

PACKAGE = Path(campus.__file__).parent
LAYERS = ["session", "config", "observability", "http", "accounts", "web", "runtime"]
#: The entries: campus/__init__.py, __main__.py, cli.py may import anything.
ENTRIES = "(entries)"


def layer_of(module: str) -> str:
    """``campus.web.handlers.auth`` -> ``web``; the top-level modules are entries."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else ENTRIES


def rank(layer: str) -> int:
    return len(LAYERS) if layer == ENTRIES else LAYERS.index(layer)


def imports(path: Path) -> list[tuple[int, str]]:
    """Every ``campus.*`` module the file imports, with its line (lazy imports included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "campus":
                names = [f"campus.{alias.name}" for alias in node.names]
            found += [(node.lineno, name) for name in names if name.startswith("campus")]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("campus")]
    return found


def modules() -> list[tuple[str, Path]]:
    result = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(relative.parts).removesuffix(".__init__")
        result.append((name, path))
    return result


def test_every_package_imports_only_from_below() -> None:
    wrong = []
    for module, path in modules():
        own = layer_of(module)
        for line, target in imports(path):
            theirs = layer_of(target)
            if target == "campus" or theirs == own:
                continue
            if own == "session" or rank(theirs) > rank(own):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {own} imports {target}")
    assert not wrong, "imports against the direction:\n" + "\n".join(wrong)


def may_import(layer: str) -> set[str]:
    """The packages *layer*'s docstring says it may import: the ``:mod:`campus.x``` named
    after "May import", or every package below it when it says "everything below it"."""
    doc = ast.get_docstring(ast.parse((PACKAGE / layer / "__init__.py").read_text())) or ""
    assert "May import" in doc, f"campus/{layer}/__init__.py: say what it may import"
    allowed = doc.split("May import", 1)[1]
    if "everything below it" in allowed:
        return set(LAYERS[: LAYERS.index(layer)])
    return set(re.findall(r":mod:`campus\.(\w+)`", allowed))


def test_every_package_says_its_job_and_what_it_may_import() -> None:
    for layer in LAYERS:
        doc = ast.get_docstring(ast.parse((PACKAGE / layer / "__init__.py").read_text()))
        assert doc, f"campus/{layer}/__init__.py has no docstring"


def test_every_package_imports_only_what_its_docstring_allows() -> None:
    """The docstrings are the map a reader trusts: an import they do not list fails here."""
    wrong = []
    for module, path in modules():
        own = layer_of(module)
        if own in (ENTRIES, "session"):  # the entries import anything; session, nothing
            continue
        allowed = may_import(own)
        for line, target in imports(path):
            theirs = layer_of(target)
            if theirs != own and target != "campus" and theirs not in allowed:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {own} imports {target}")
    assert not wrong, "imports the package docstring does not allow:\n" + "\n".join(wrong)


def test_the_checker_sees_a_wrong_import(tmp_path: Path) -> None:
    """The test above can fail: an upward import is found where it is."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from campus.web.app import make_app\n")
    assert imports(source) == [(2, "campus.web.app")]
    assert rank(layer_of("campus.web.app")) > rank(layer_of("campus.accounts.users"))
    assert layer_of("campus.cli") == ENTRIES
