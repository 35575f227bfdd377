"""The HTTP application: routes, handlers, the services they reach, the Express cut-over.

May import: :mod:`campus.accounts`, :mod:`campus.session`, :mod:`campus.http`,
:mod:`campus.observability`, :mod:`campus.config`. Builds nothing that does I/O at import.
"""
