"""`python3 -m gnats` is `python3 gnatsd.py`."""

import sys

from .main import main

sys.exit(main(sys.argv[1:]))
