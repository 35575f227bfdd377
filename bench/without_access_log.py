"""Run campus with its access log silenced (`without_access_log.py --port 8000`): a lever's size.

For bench/instructions.py's `campus-memory-nolog` and `campus-redis-nolog` only: the
``campus.access`` logger is set above INFO, so each request still builds the line's arguments
but writes nothing. Not how campus ships (`[log] access = false` is the operator's switch).
"""

from __future__ import annotations

import logging
import runpy
import sys

logging.getLogger("campus.access").setLevel(logging.WARNING)
sys.argv = ["campus", *sys.argv[1:]]
runpy.run_module("campus", run_name="__main__", alter_sys=True)
