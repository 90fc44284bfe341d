"""pytest fixtures for a real NATS server in the test process.

Registered through the `pytest11` entry point, so installing gnatsd.py makes
them available to every test suite:

    def test_pub_sub(nats_server):          # a server on a free port
        nc = await nats.connect(nats_server.client_url)

    @pytest.mark.nats_server(max_payload=1024)
    def test_small(nats_server): ...

    def test_two(nats_server_factory):      # more servers, any options
        a = nats_server_factory(cluster={"port": -1})

    def test_cluster(nats_cluster):         # three routed servers
        nats_cluster.urls

The ini option `nats_server_config` names a config file (relative to the
rootdir) the `nats_server` fixture starts from; the marker's keywords win over
it. Every server a test started is stopped when it ends, and an error inside
a server fails the test (EmbeddedServer.stop raises it).

This module is imported by every pytest run in an environment that has the
package: it imports nothing of the server until a fixture runs.
"""

import os
import time

import pytest

CLUSTER_SIZE = 3
CLUSTER_FORM_TIMEOUT = 10.0     # seconds for the routes of nats_cluster to be up


def pytest_addoption(parser):
    parser.addini("nats_server_config",
                  "config file (relative to the rootdir) for the nats_server fixture")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "nats_server(config=None, **options): gnats.run() arguments for the "
        "nats_server fixture (config file keys, e.g. max_payload=1024)")


@pytest.fixture
def nats_server_factory():
    """Call with gnats.run() arguments to start a server; all are stopped
    at the end of the test."""
    from .embed import run
    servers = []

    def factory(config=None, **options):
        srv = run(config, **options)
        servers.append(srv)
        return srv
    yield factory
    failures = []
    for srv in reversed(servers):
        try:
            srv.stop()
        except Exception as e:      # stop the others, then fail the test
            failures.append(e)
    if failures:
        raise failures[0]


@pytest.fixture
def nats_server(request, nats_server_factory):
    """A running server on a free port (`.client_url`, `.port`), stopped
    after the test. Options: @pytest.mark.nats_server(...) and the
    `nats_server_config` ini option."""
    config = request.config.getini("nats_server_config") or None
    if config:
        config = os.path.join(str(request.config.rootpath), config)
    options = {}
    marker = request.node.get_closest_marker("nats_server")
    if marker is not None:
        if marker.args:
            config = marker.args[0]
        options = dict(marker.kwargs)
        config = options.pop("config", config)
    return nats_server_factory(config, **options)


class NatsCluster:
    """Servers routed to each other; `urls` are their client URLs."""

    def __init__(self, servers):
        self.servers = servers

    @property
    def urls(self):
        return [s.client_url for s in self.servers]

    def __iter__(self):
        return iter(self.servers)

    def __len__(self):
        return len(self.servers)

    def __getitem__(self, i):
        return self.servers[i]


@pytest.fixture
def nats_cluster(nats_server_factory):
    """Three in-process servers in one cluster (full mesh up before the test
    starts); `nats_cluster.urls`, `nats_cluster[i].client_url`."""
    cluster = {"name": "pytest", "port": -1}
    seed = nats_server_factory(cluster=cluster)
    servers = [seed] + [
        nats_server_factory(cluster=dict(cluster, routes=[seed.cluster_url]))
        for _ in range(CLUSTER_SIZE - 1)]
    deadline = time.monotonic() + CLUSTER_FORM_TIMEOUT
    while not all(s.route_count() >= CLUSTER_SIZE - 1 for s in servers):
        if time.monotonic() > deadline:
            raise RuntimeError("nats_cluster: routes not up within %.0f s (%s)" % (
                CLUSTER_FORM_TIMEOUT, [s.route_count() for s in servers]))
        time.sleep(0.01)
    return NatsCluster(servers)
