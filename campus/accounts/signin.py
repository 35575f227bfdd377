"""What a session remembers of its sign-in, for "Your sessions": when, from where, with what.

Recorded once, at login, into the session's data under :data:`SIGN_IN`; later requests never
write it again, so showing it costs nothing per request. The agent is a short description
("Firefox 133 on Windows", "Safari on iPhone") from the User-Agent header, parsed with
ua-parser (the maintained uap-core rules), never the raw header.
"""

from __future__ import annotations

from typing import Any

from ua_parser import parse

#: The session key that holds the sign-in record.
SIGN_IN = "signin"

#: A User-Agent is cut to this before parsing: no legitimate one is longer, and the rules are
#: regular expressions, whose cost grows with the text.
MAX_AGENT = 512

#: Browser families as a person names them.
_BROWSERS = {
    "Mobile Safari": "Safari",
    "Mobile Safari UI/WKWebView": "Safari",
    "Chrome Mobile": "Chrome",
    "Chrome Mobile iOS": "Chrome",
    "Chrome Mobile WebView": "Android WebView",
    "HeadlessChrome": "Headless Chrome",
    "Firefox Mobile": "Firefox",
    "Firefox iOS": "Firefox",
    "Edge Mobile": "Edge",
    "Samsung Internet": "Samsung Internet",
}
#: Systems as a person names them.
_SYSTEMS = {"Mac OS X": "macOS", "Chrome OS": "ChromeOS", "iOS": "iOS"}
#: Devices named instead of their system: "Safari on iPhone" says more than "on iOS".
_DEVICES = {"iPhone", "iPad", "iPod"}
#: Browsers whose version says little (it follows the system's): shown without one.
_NO_VERSION = {"Safari"}


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
    if agent is None or agent.family == "Other":
        browser = "Unknown browser"
    else:
        browser = _BROWSERS.get(agent.family, agent.family)
        if agent.major and browser not in _NO_VERSION:
            browser = f"{browser} {agent.major}"
    if device is not None and device.family in _DEVICES:
        return f"{browser} on {device.family}"
    if system is not None and system.family != "Other":
        return f"{browser} on {_SYSTEMS.get(system.family, system.family)}"
    return browser
