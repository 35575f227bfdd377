"""Browser fixtures: Debian's Chromium driven by Playwright, against a real campus process.

No browser is downloaded: Playwright launches /usr/bin/chromium (``apt-get install chromium``;
.ci/run does it). Without it these tests fail with one clear line; they never skip. A test that
fails leaves a screenshot of every page it opened in test-artifacts/.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import REPO, Campus, campus_env

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # reported by the browser fixture, as a failure
    sync_playwright = None  # type: ignore[assignment]

CHROMIUM = "/usr/bin/chromium"
#: Headless, and quiet: no background requests to a network this machine does not have.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # the suite may run as root (CI does)
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "test-artifacts"
TIMEOUT_MS = 10_000
#: axe-core from tests/e2e/package-lock.json (`npm ci` in tests/e2e; .ci/run does it).
AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
#: WCAG 2.0, 2.1 and 2.2, levels A and AA.
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]

_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, so fixtures can tell whether the test failed."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if sync_playwright is None:
        pytest.fail(
            "Playwright is not installed: pip install -r requirements-dev.txt", pytrace=False
        )
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: apt-get install chromium "
            "(.ci/run installs it); the end-to-end tests need it",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module", params=["memory", "redis"])
def campus(request: pytest.FixtureRequest, users_file: Path) -> Iterator[Campus]:
    """`python -m campus` on a free port, with the memory store or the suite's redis-server."""
    env = {"CAMPUS_USERS_FILE": str(users_file)}
    if request.param == "redis":
        redis_server = request.getfixturevalue("redis_server")
        redis_server.client().flushall()
        env.update(CAMPUS_STORE="redis", CAMPUS_REDIS_URL=redis_server.url)
    server = Campus(campus_env(**env))
    yield server
    log = server.stop()
    assert "Traceback" not in log, log


def base_url(server: Campus) -> str:
    return f"http://127.0.0.1:{server.port}"


@pytest.fixture
def open_page(
    request: pytest.FixtureRequest, browser: Browser
) -> Generator[Callable[[str], Page], None, None]:
    """open_page(base_url) → a page in a fresh context (no cookies), watched for errors.

    Script errors and Content-Security-Policy violations fail the test; Chromium's own
    "Failed to load resource" lines for 401/403/503 answers are expected and ignored.
    """
    pages: list[Page] = []
    problems: list[str] = []

    def on_console(message: Any) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            problems.append(f"console: {message.text}")

    def open_(url: str) -> Page:
        context = browser.new_context(base_url=url, viewport={"width": 1280, "height": 800})
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        page.on("console", on_console)
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        pages.append(page)
        return page

    yield open_

    reports = request.node.stash.get(_REPORTS, {})
    if any(report.failed for report in reports.values()):
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.nodeid)
        for number, page in enumerate(pages):
            path = ARTIFACTS / f"{name}-{number}.png"
            try:
                page.screenshot(path=str(path), full_page=True)
                print(f"screenshot: {path}")
            except Exception as exc:  # a crashed page must not hide the test's own failure
                print(f"no screenshot of page {number}: {exc}")
    for page in pages:
        page.context.close()
    assert problems == [], problems


@pytest.fixture
def page(open_page: Callable[[str], Page], campus: Campus) -> Page:
    return open_page(base_url(campus))


@pytest.fixture(scope="session")
def axe_source() -> str:
    if not AXE.is_file():
        pytest.fail(
            f"axe-core is not installed at {AXE}: (cd tests/e2e && npm ci) (.ci/run does it)",
            pytrace=False,
        )
    return AXE.read_text()


@pytest.fixture
def assert_accessible(axe_source: str) -> Callable[[Page, str], None]:
    """assert_accessible(page, "what the page shows") → axe-core finds no WCAG 2.2 AA violation.

    axe goes in through page.evaluate: the page's Content-Security-Policy (no inline script,
    Trusted Types) governs the page's own scripts, not what the test runs in it, so the check
    sees the page exactly as users get it.
    """

    def check(page: Page, state: str) -> None:
        if not page.evaluate("() => typeof window.axe === 'object'"):
            page.evaluate(axe_source)
        results = page.evaluate(
            "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG_AA
        )
        problems = [
            f"{violation['id']} ({violation['impact']}): {violation['help']} at "
            + ", ".join(str(node["target"]) for node in violation["nodes"])
            for violation in results["violations"]
        ]
        assert problems == [], f"{state}: " + "; ".join(problems)

    return check
