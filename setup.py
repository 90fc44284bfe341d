"""Install gnatsd.py as a package with a `gnatsd` console script.

Running the server needs nothing installed (`python3 gnatsd.py`); this is
for those who want it on PATH, for `import gnats` (gnats.run) and the pytest
fixtures (registered through the pytest11 entry point), and for the test
extras."""

import re

from setuptools import find_packages, setup

with open("gnats/__init__.py") as f:
    release = re.search(r'^RELEASE = "([^"]+)"', f.read(), re.M).group(1)

setup(
    name="gnatsd.py",
    version=release,
    description="A high-performance NATS messaging server in pure Python",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["gnats", "gnats.*"]),
    py_modules=["gnatsd"],
    python_requires=">=3.9",
    extras_require={
        "bcrypt": ["bcrypt"],
        "test": ["nats-py", "bcrypt", "pytest", "nkeys", "aiohttp"],  # nkeys: signs in tests only
    },
    entry_points={
        "console_scripts": ["gnatsd = gnats.main:main"],
        # the nats_server / nats_server_factory / nats_cluster fixtures
        "pytest11": ["gnats = gnats.pytest_plugin"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: MIT License",
        "Topic :: System :: Networking",
    ],
)
