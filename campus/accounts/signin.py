"""What a session remembers of its sign-in, for "Your sessions": when, from where, with what.

Recorded once, at login, into the session's data under :data:`SIGN_IN`; later requests never
write it again, so showing it costs nothing per request. The agent is a short description
("Firefox 133 on Windows", "Safari on iPhone") from the User-Agent header, parsed with
ua-parser (the maintained uap-core rules), never the raw header, and made only of browser and
system names on an allow-list: never of words the client chose.
"""

from __future__ import annotations

import re
from typing import Any

from ua_parser import parse

#: The session key that holds the sign-in record.
SIGN_IN = "signin"

#: A User-Agent is cut to this before parsing: no legitimate one is longer, and the rules are
#: regular expressions, whose cost grows with the text.
MAX_AGENT = 512

#: The browsers shown, by ua-parser family, as a person names them. An allow-list: a family
#: not here is "Unknown browser", since a family can be any words the client chose ("Your
#: account was hacked call 555-0100 Bot" parses as one).
_BROWSERS = {
    "Chrome": "Chrome",
    "Chrome Mobile": "Chrome",
    "Chrome Mobile iOS": "Chrome",
    "Chrome Mobile WebView": "Android WebView",
    "Chromium": "Chromium",
    "HeadlessChrome": "Headless Chrome",
    "Firefox": "Firefox",
    "Firefox Mobile": "Firefox",
    "Firefox iOS": "Firefox",
    "Firefox Focus": "Firefox Focus",
    "Safari": "Safari",
    "Mobile Safari": "Safari",
    "Mobile Safari UI/WKWebView": "Safari",
    "Edge": "Edge",
    "Edge Mobile": "Edge",
    "IE": "Internet Explorer",
    "Opera": "Opera",
    "Opera Mobile": "Opera",
    "Opera Mini": "Opera Mini",
    "Samsung Internet": "Samsung Internet",
    "Vivaldi": "Vivaldi",
    "Brave": "Brave",
    "Yandex Browser": "Yandex Browser",
    "UC Browser": "UC Browser",
    "DuckDuckGo Mobile": "DuckDuckGo",
    "Silk": "Silk",
}
#: The systems shown, by ua-parser family, as a person names them (an allow-list too).
_SYSTEMS = {
    "Windows": "Windows",
    "Mac OS X": "macOS",
    "iOS": "iOS",
    "Android": "Android",
    "Chrome OS": "ChromeOS",
    "Linux": "Linux",
    "Ubuntu": "Ubuntu",
    "Debian": "Debian",
    "Fedora": "Fedora",
    "FreeBSD": "FreeBSD",
    "OpenBSD": "OpenBSD",
}
#: Devices named instead of their system: "Safari on iPhone" says more than "on iOS".
_DEVICES = {"iPhone", "iPad", "iPod"}
#: Browsers whose version says little (it follows the system's): shown without one.
_NO_VERSION = {"Safari"}
#: A major version as browsers write it: a few digits, nothing the client could make a word of.
_VERSION = re.compile(r"[0-9]{1,4}")


def warm_up() -> None:
    """Build the parser's matcher now: its first use compiles every rule while holding the
    GIL (0.3-0.8 s here), which must not happen under the first login's event loop."""
    describe_agent("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0")


def sign_in_record(address: str, user_agent: str | None, *, at: float) -> dict[str, Any]:
    """The sign-in facts to keep in the session: epoch seconds, address, agent."""
    return {"at": int(at), "address": address, "agent": describe_agent(user_agent)}


def describe_agent(user_agent: str | None) -> str:
    """A short, human description of a User-Agent: "Firefox 133 on Windows"."""
    text = (user_agent or "").strip()[:MAX_AGENT]
    if not text:
        return "Unknown browser"
    result = parse(text)
    agent, system, device = result.user_agent, result.os, result.device
    browser = _BROWSERS.get(agent.family, "") if agent is not None else ""
    if not browser:
        browser = "Unknown browser"
    elif agent is not None and _VERSION.fullmatch(agent.major or "") and browser not in _NO_VERSION:
        browser = f"{browser} {agent.major}"
    if device is not None and device.family in _DEVICES:
        return f"{browser} on {device.family}"
    named = _SYSTEMS.get(system.family, "") if system is not None else ""
    return f"{browser} on {named}" if named else browser
