"""The HTTP server around the application: the bounds on connections that Tornado's own
options cannot hold (connections, exchange), the JSON error every answer has (errors), who
the client is (clients), and the one module that relies on Tornado beyond its documented API
(tornado_private).

May import: :mod:`campus.observability`, :mod:`campus.config`. Knows no route or session.
"""
