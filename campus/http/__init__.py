"""The HTTP server around the application: connection bounds, and requests in flight.

May import: :mod:`campus.observability`, :mod:`campus.config`. Knows no route or session.
"""
