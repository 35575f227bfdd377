"""The sign-in record a session keeps for "Your sessions" (campus.accounts.signin)."""

from __future__ import annotations

from campus.accounts.signin import MAX_AGENT, describe_agent, sign_in_record

FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36"
)
MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15"
)


def test_the_record_is_when_where_and_what_in_whole_seconds() -> None:
    record = sign_in_record("198.51.100.7", FIREFOX, at=1_800_000_000.9)
    assert record == {
        "at": 1_800_000_000,
        "address": "198.51.100.7",
        "agent": "Firefox 133 on Windows",
    }


def test_browsers_are_named_as_people_name_them() -> None:
    assert describe_agent(IPHONE) == "Safari on iPhone"  # the device says more than "iOS"
    assert describe_agent(ANDROID) == "Chrome 131 on Android"
    assert describe_agent(MAC) == "Safari on macOS"  # Safari's version follows the system's


def test_no_agent_or_junk_is_an_unknown_browser() -> None:
    for agent in (None, "", "   ", "x" * 5000, "EvilBrowser/1.0 (HackerOS 3)"):
        assert describe_agent(agent) == "Unknown browser", agent


def test_a_huge_agent_is_cut_before_parsing() -> None:
    padded = FIREFOX + " " + "a" * (10 * MAX_AGENT)
    assert describe_agent(padded) == "Firefox 133 on Windows"


def test_only_known_names_are_shown_never_words_the_client_chose() -> None:
    hacked = "Mozilla/5.0 (compatible; Your account was hacked call 555-0100 Bot/1.0)"
    on_windows = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; compatible; Scam 555-0100 Bot/1.0)"
    for agent in ("MyBot/1", "curl/8.5.0", hacked):
        assert describe_agent(agent) == "Unknown browser", agent
    assert describe_agent(on_windows) == "Unknown browser on Windows"
    assert describe_agent("Mozilla/5.0 (X11; SomeOS 555-0100) Firefox/133.0") == "Firefox 133"
