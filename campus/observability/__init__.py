"""What an operator sees: log lines (text or JSON, batched), the access log, request ids,
Prometheus metrics.

May import: :mod:`campus.config`, :mod:`campus.session` (to time store calls). Never the
web layer: the application hands in what a line needs.
"""
