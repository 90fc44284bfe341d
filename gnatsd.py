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

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
