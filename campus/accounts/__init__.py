"""Who may sign in: the users file, password hashing and policy, login throttling, and the
record a session keeps of its sign-in.

May import: :mod:`campus.config`, :mod:`campus.session`. Never Tornado's web layer: the
handlers in :mod:`campus.web` call in here.
"""
