#!/usr/bin/env python3
"""gnatsd.py: a NATS server in pure Python. Run `python3 gnatsd.py -h`."""

import os
import sys

if sys.version_info < (3, 9):
    sys.exit("gnatsd.py needs Python 3.9 or newer")

# The package sits beside this file; find it even when the interpreter does
# not put the script's directory on the path (python3 -I, some launchers).
_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.insert(0, _here)

from gnats.main import main  # noqa: E402

# PyPy: a 16 MiB young generation instead of its default (the L2 cache
# size, 1 MiB here). With 1 MiB, what a 1 MiB read and its deliveries are
# still using at each minor collection (a third of it) was promoted and left
# to major collections, up to 60% of the server's CPU: pub -> sub 1 KiB went
# from 3.9 to 1.3-1.7 us per message, 128 B from 0.65 to 0.22-0.27
# (PERFORMANCE.md, "PyPy, side by side with CPython"). PyPy reads
# PYPY_GC_NURSERY only at start, so the launcher runs itself again once
# with it set (same PID); a value the user set is kept.
NURSERY = "16M"

if __name__ == "__main__":
    if sys.implementation.name == "pypy" and "PYPY_GC_NURSERY" not in os.environ:
        os.environ["PYPY_GC_NURSERY"] = NURSERY
        os.execv(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:])
    sys.exit(main(sys.argv[1:]))
