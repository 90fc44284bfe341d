#!/usr/bin/env python3
"""gnatsd.py: a NATS server in pure Python. Run `python3 gnatsd.py -h`."""

import sys

if sys.version_info < (3, 9):
    sys.exit("gnatsd.py needs Python 3.9 or newer")

from gnats.main import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
