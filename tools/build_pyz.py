#!/usr/bin/env python3
"""Build gnatsd.pyz: the whole server as one file (`python3 gnatsd.pyz -h`).

The archive holds the gnats package (sources only, no caches) and a
__main__.py doing what gnatsd.py does. Prints the path written and exits 0.

    python3 tools/build_pyz.py [-o PATH]      (default: gnatsd.pyz in the checkout)
"""

import argparse
import os
import shutil
import sys
import tempfile
import zipapp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MAIN = '''\
import sys

if sys.version_info < (3, 9):
    sys.exit("gnatsd.py needs Python 3.9 or newer")

from gnats.main import main

sys.exit(main(sys.argv[1:]))
'''


def build(output: str) -> str:
    src = os.path.join(ROOT, "gnats")
    if not os.path.isfile(os.path.join(src, "__init__.py")):
        raise SystemExit("build_pyz: no gnats package in %s" % ROOT)
    with tempfile.TemporaryDirectory(prefix="gnatsd-pyz-") as stage:
        # the package and its subpackages (gnats/jetstream/), sources only
        for root, dirs, files in os.walk(src):
            dirs[:] = sorted(d for d in dirs if os.path.isfile(os.path.join(root, d, "__init__.py")))
            dest = os.path.join(stage, "gnats", os.path.relpath(root, src))
            os.makedirs(dest, exist_ok=True)
            for name in sorted(files):
                if name.endswith(".py"):
                    shutil.copy2(os.path.join(root, name), os.path.join(dest, name))
        with open(os.path.join(stage, "__main__.py"), "w") as f:
            f.write(MAIN)
        tmp = output + ".tmp"
        zipapp.create_archive(stage, tmp, interpreter="/usr/bin/env python3", compressed=True)
        os.replace(tmp, output)        # never leave a half-written archive
    return output


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Build gnatsd.pyz, a single-file gnatsd.py.")
    ap.add_argument("-o", "--output", default=os.path.join(ROOT, "gnatsd.pyz"),
                    help="where to write the archive (default: %(default)s)")
    args = ap.parse_args(argv)
    try:
        path = build(os.path.abspath(args.output))
    except OSError as e:
        sys.stderr.write("build_pyz: cannot write %s: %s\n" % (args.output, e.strerror or e))
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
