"""The files a server process leaves for other programs, as nats-server
writes them: the pid file (-P / pid_file) and the ports file
(--ports_file_dir: <executable>_<pid>.ports, JSON of the client, monitoring
and cluster URLs it listens on). Both are removed when the server exits."""

import json
import os
import sys

from .net import local_ip


def write_pid_file(srv):
    if srv.opts.pid_file:
        try:
            with open(srv.opts.pid_file, "w") as f:
                f.write(str(os.getpid()))
        except OSError as e:
            srv.log.error("Could not write pid file: %s" % e)


def write_ports_file(srv):
    d = srv.opts.ports_file_dir
    if not d:
        return
    ports = {"nats": ["nats://%s" % u for u in srv.client_urls(advertised=False)]}
    if srv.monitor is not None:
        if srv.monitor.http_port:
            ports["monitoring"] = ["http://%s:%d" % (local_ip(), srv.monitor.http_port)]
    ws = getattr(srv, "websocket", None)
    if ws is not None:          # issue 21, as nats-server's `websocket` entry
        ports["websocket"] = ["%s://%s:%d" % ("wss" if ws.tls else "ws", local_ip(), ws.port)]
    if srv.cluster is not None:
        ports["cluster"] = ["nats://%s:%d" % (local_ip(), srv.cluster.port)]
    path = os.path.join(d, "%s_%d.ports" % (os.path.basename(sys.argv[0] or "gnatsd").split(".")[0], os.getpid()))
    try:
        with open(path, "w") as f:
            json.dump(ports, f)
        srv.ports_file = path
    except OSError as e:
        srv.log.error("Could not write ports file: %s" % e)


def remove_pid_file(srv):
    if srv.opts.pid_file:
        try:
            os.unlink(srv.opts.pid_file)
        except OSError:
            pass


def remove_ports_file(srv):
    if srv.ports_file:
        try:
            os.unlink(srv.ports_file)
        except OSError:
            pass
        srv.ports_file = ""
