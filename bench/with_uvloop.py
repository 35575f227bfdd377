"""Run a script (`with_uvloop.py bare.py 8000`) or a module (`with_uvloop.py -m campus`) on uvloop.

For `run.py --uvloop` and `instructions.py --uvloop`: bare Tornado on uvloop too (campus runs
on uvloop by itself when it is installed: `[server] event_loop = "auto"`).
"""

from __future__ import annotations

import asyncio
import runpy
import sys

import uvloop

asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
if sys.argv[1] == "-m":
    module = sys.argv[2]
    sys.argv = [module, *sys.argv[3:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
else:
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    runpy.run_path(script, run_name="__main__")
