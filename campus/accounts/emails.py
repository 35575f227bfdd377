"""The one normalisation of email addresses: the key an account is found, counted and indexed by.

Login, the users file, ``campus users add/remove``, the login counters and the store's index
of a user's sessions all use :func:`normalize_email`, so every spelling of an address that
``users add`` would store reaches the same account: surrounding spaces ignored, case ignored,
Unicode NFC (``jose\\u0301`` is ``josé``), and the domain in its IDNA form
(``xn--exmple-cua.edu`` is ``exämple.edu``, fullwidth letters are plain ones). The key keeps
the readable Unicode domain, the form email-validator stores.

It never raises: login feeds it whatever a client sent (lone surrogates, labels IDNA refuses,
254 characters of anything), and what IDNA cannot read is kept as it came, lower-cased.
"""

from __future__ import annotations

import unicodedata

import idna


def normalize_email(email: str) -> str:
    """The key of an address: ``" Ann@EXÄMPLE.edu "`` and ``"ann@xn--exmple-cua.edu"`` agree."""
    text = email.strip().lower()
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    local, at, domain = text.rpartition("@")
    if not at:
        return text
    return f"{local}@{_domain(domain)}"


def _domain(domain: str) -> str:
    """The Unicode form of a domain after IDNA's mapping, or the domain as given if none."""
    if domain.isascii() and "xn--" not in domain:
        return domain  # already what IDNA would give back: lower-case ASCII
    try:
        return str(idna.decode(idna.encode(domain, uts46=True)))
    except (idna.IDNAError, UnicodeError, ValueError):
        return domain


def lookalike_key(email: str) -> str:
    """What two addresses that only look alike share: NFKC with case folded.

    ``bob@example.edu`` in fullwidth letters and in plain ones are different keys but one
    lookalike key; ``users add`` refuses the second of such a pair.
    """
    once = unicodedata.normalize("NFKC", normalize_email(email))
    return unicodedata.normalize("NFKC", once.casefold())
