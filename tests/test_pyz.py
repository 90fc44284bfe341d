"""The single-file build: tools/build_pyz.py writes a zipapp that runs as
gnatsd.py does."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "tools", "build_pyz.py")


class TestPyz(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = tempfile.mkdtemp(prefix="gnatsd-pyz-test-")
        cls.pyz = os.path.join(cls.d, "gnatsd.pyz")
        cls.build = subprocess.run([sys.executable, BUILD, "-o", cls.pyz], cwd=ROOT,
                                   capture_output=True, timeout=60)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.d)

    def run_pyz(self, *argv):
        # from an empty folder, so nothing can come from the checkout
        return subprocess.run([sys.executable, self.pyz] + list(argv), cwd=self.d,
                              capture_output=True, timeout=20)

    def test_build_prints_path(self):
        self.assertEqual(self.build.returncode, 0, self.build.stderr)
        self.assertEqual(self.build.stdout.decode().strip(), self.pyz)
        with zipfile.ZipFile(self.pyz) as z:
            names = z.namelist()
        self.assertIn("__main__.py", names)
        self.assertIn("gnats/__init__.py", names)
        self.assertFalse([n for n in names if "__pycache__" in n or n.endswith(".pyc")])

    def test_unwritable_output(self):
        r = subprocess.run([sys.executable, BUILD, "-o", "/nonexistent/dir/x.pyz"], cwd=ROOT,
                           capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot write", r.stderr.decode())
        self.assertNotIn("Traceback", r.stderr.decode())

    def test_version(self):
        from gnats.cli import version_line
        r = self.run_pyz("--version")
        self.assertEqual((r.returncode, r.stdout.decode()), (0, version_line() + "\n"), r.stderr)

    def test_help(self):
        from gnats.cli import USAGE
        r = self.run_pyz("--help")
        self.assertEqual((r.returncode, r.stdout.decode()), (0, USAGE), r.stderr)

    def test_serves(self):
        log = os.path.join(self.d, "out.log")
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, self.pyz, "-a", "127.0.0.1", "-p", "-1"],
                                    cwd=self.d, stdout=out, stderr=subprocess.STDOUT)
        try:
            text = ""
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and proc.poll() is None:
                with open(log, "rb") as f:
                    text = f.read().decode("utf-8", "replace")
                if "Server is ready" in text:
                    break
                time.sleep(0.05)
            self.assertIn("Server is ready", text)
            self.assertRegex(text, r"Listening for client connections on 127\.0\.0\.1:\d+")
        finally:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


if __name__ == "__main__":
    unittest.main()
