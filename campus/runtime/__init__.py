"""Running the server as a long-lived process: serve and drain, worker processes, the event
loop, systemd's notify socket.

May import everything below it: :mod:`campus.web`, :mod:`campus.http`,
:mod:`campus.accounts`, :mod:`campus.observability`, :mod:`campus.config`,
:mod:`campus.session`.
"""
