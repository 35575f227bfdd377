"""The account page follows the users file: in headless Chromium, against a real campus process
whose users file the test edits as an operator would (a new file renamed over the old one)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import base_url
from tests.support.apps import CHEAP_HASHER, PASSWORD
from tests.support.servers import Campus, campus_env, wait_for

ANN = {"email": "ann@campus.test", "name": "Ann", "roles": ["student"]}


def save(path: Path, users: list[dict[str, Any]]) -> None:
    records = [{**user, "password_hash": CHEAP_HASHER.hash(PASSWORD)} for user in users]
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(json.dumps(records, indent=2))
    os.replace(temporary, path)


@pytest.fixture
def users_path(tmp_path: Path) -> Path:
    path = tmp_path / "users.json"
    save(path, [ANN])
    return path


@pytest.fixture
def live(users_path: Path) -> Iterator[Campus]:
    """A campus of this test's own: the users file it edits is read by nobody else."""
    server = Campus(campus_env(CAMPUS_USERS_FILE=str(users_path)))
    yield server
    log = server.stop()
    assert "Traceback" not in log, log


def reloads(server: Campus, times: int) -> None:
    wait_for(lambda: server.log().count("users file reloaded") >= times, "the reload", 5)


def test_the_account_page_shows_the_users_file_as_it_is_now(
    open_page: Callable[[str], Page],
    live: Campus,
    users_path: Path,
    assert_accessible: Callable[[Page, str], None],
) -> None:
    url = base_url(live)
    page = open_page(url)
    page.goto("/login?next=/account")
    page.get_by_label("Email address").fill("ann@campus.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your account")
    expect(page.get_by_role("banner")).to_contain_text("Signed in as Ann")

    save(users_path, [{**ANN, "name": "Ann Smith", "roles": ["student", "tutor"]}])
    reloads(live, 1)
    page.reload()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your account")
    expect(page.get_by_role("banner")).to_contain_text("Signed in as Ann Smith")
    details = page.get_by_role("region", name="Details")
    expect(details.get_by_role("definition").first).to_have_text("Ann Smith")
    expect(details).to_contain_text("tutor")
    assert_accessible(page, "account page, after the users file changed")

    save(users_path, [])  # Ann is gone: her session ends at its next request
    reloads(live, 2)
    page.reload()
    expect(page).to_have_url(f"{url}/login?next=%2Faccount")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    assert_accessible(page, "sign-in, after the user was removed")
