"""The command line, parsed as Go's flag package (and so nats-server) does.

Flag syntax: `-p 4222`, `-p=4222`, `--port 4222`, `--port=4222`; a boolean flag
takes no separate value (`-D`, `-T=false`, never `-T false`); a flag that needs
a value takes the next argument whatever it looks like (`-p -1`); `--` ends
the flags. A non-flag argument is an error, as in nats-server.

The pipeline: parse_command_line(argv) -> CommandLine (what was asked and the
Options fields given explicitly), then build_options(cmdline) = defaults <-
config file <- explicit flags (the command line wins). A reload re-runs
build_options on the CommandLine kept in opts.cmdline. main_options(argv) is
the whole thing for the entry point, printing and exiting for -h, -v, errors.
"""

import os
import signal as _signal
import sys
from dataclasses import dataclass, field
from typing import Dict, List
from urllib.parse import unquote, urlsplit

from . import RELEASE, SERVER_NAME, VERSION
from .conf import ConfigError, parse_file
from .options import (DEFAULT_HOST, DEFAULT_PORT, Options, apply_config,
                      check_url)

PROG = "gnatsd"

USAGE = """\
Usage: gnatsd [options]

Server Options:
    -a, --addr, --net <host>         Bind to host address (default: 0.0.0.0)
    -p, --port <port>                Use port for clients (default: 4222; -1: any free port)
    -n, --name
        --server_name <server_name>  Server name (default: auto)
    -P, --pid <file>                 File to store PID
    -m, --http_port <port>           Use port for http monitoring
    -ms,--https_port <port>          Use port for https monitoring
    -c, --config <file>              Configuration file
    -t                               Test configuration and exit
    -sl,--signal <signal>[=<pid>]    Send signal to gnatsd process (ldm, stop, quit, term, reopen, reload)
                                     <pid> can be either a PID (e.g. 1) or the path to a PID file
        --client_advertise <string>  Client URL to advertise to other servers
        --ports_file_dir <dir>       Creates a ports file in the specified directory (<executable_name>_<pid>.ports)

Logging Options:
    -l, --log <file>                 File to redirect log output
    -T, --logtime                    Timestamp log entries (default: true)
    -s, --syslog                     Log to syslog
    -r, --remote_syslog <addr>       Syslog server addr (udp://localhost:514)
    -D, --debug                      Enable debugging output
    -V, --trace                      Trace the raw protocol
    -VV                              Verbose trace (same as -V here)
    -DV                              Debug and trace
    -DVV                             Debug and verbose trace (same as -DV here)

JetStream Options:
    -js, --jetstream                 Enable JetStream functionality
    -sd, --store_dir <dir>           Set the storage directory

Authorization Options:
        --user <user>                User required for connections
        --pass <password>            Password required for connections
        --auth <token>               Authorization token required for connections

TLS Options:
        --tls                        Enable TLS, do not verify clients (default: false)
        --tlscert <file>             Server certificate file
        --tlskey <file>              Private key for server certificate
        --tlsverify                  Enable TLS, verify client certificates
        --tlscacert <file>           Client certificate CA for verification

Cluster Options:
        --routes <rurl-1, rurl-2>    Routes to solicit and connect
        --cluster <cluster-url>      Cluster URL for solicited routes
        --cluster_listen <url>       Cluster url from which members can solicit routes
        --cluster_name <string>      Cluster Name, if not set one will be dynamically generated
        --no_advertise <bool>        Do not advertise known cluster information to clients
        --cluster_advertise <string> Cluster URL to advertise to other servers
        --connect_retries <number>   For implicit routes, number of connect retries

Common Options:
    -h, --help                       Show this message
    -v, --version                    Show version
        --help_tls                   TLS help

Single-dash long names work too (-port 4222, -cluster URL, -config FILE).
"""

USAGE_HINT = "Usage: gnatsd [options]; run with --help for the list of options."

try:
    from .tls import TLS_HELP
except ImportError:         # no ssl module in this Python
    TLS_HELP = "TLS is not available: this Python has no ssl module.\n"

# --signal NAME -> what nats-server sends for it.
SIGNALS = {
    "stop": _signal.SIGKILL,
    "quit": _signal.SIGINT,
    "term": _signal.SIGTERM,
    "reopen": getattr(_signal, "SIGUSR1", None),
    "reload": getattr(_signal, "SIGHUP", None),
    "ldm": getattr(_signal, "SIGUSR2", None),
}


class UsageError(ValueError):
    """A bad command line; str() is one line, as Go's flag package words it."""


@dataclass
class CommandLine:
    action: str = "run"             # run, help, version, help_tls, signal, check
    config_file: str = ""
    signal: str = ""
    signal_pid: str = ""            # a PID or a pid file path, "" if not given
    flags: Dict[str, object] = field(default_factory=dict)  # Options field -> value
    argv: List[str] = field(default_factory=list)


# Flag kinds and the special (non-Options) targets.
_BOOL, _INT, _STR = "bool", "int", "string"
_CONFIG, _SIGNAL, _CLUSTER, _ROUTES = "<config>", "<signal>", "<cluster>", "<routes>"
_HELP, _VERSION, _HELP_TLS, _CHECK = "<help>", "<version>", "<help_tls>", "<check>"


def _flags():
    table = {}

    def add(names, kind, target):
        for n in names.split():
            table[n] = (kind, target)
    add("a addr net", _STR, "host")
    add("p port", _INT, "port")
    add("n name server_name", _STR, "server_name")
    add("client_advertise", _STR, "client_advertise")
    add("P pid", _STR, "pid_file")
    add("m http_port", _INT, "http_port")
    add("ms https_port", _INT, "https_port")
    add("c config", _STR, _CONFIG)
    add("t", _BOOL, _CHECK)
    add("sl signal", _STR, _SIGNAL)
    add("ports_file_dir", _STR, "ports_file_dir")
    add("l log", _STR, "log_file")
    add("T logtime", _BOOL, "logtime")
    add("s syslog", _BOOL, "syslog")
    add("r remote_syslog", _STR, "remote_syslog")
    add("D debug", _BOOL, "debug")
    add("V trace VV", _BOOL, "trace")
    add("DV DVV", _BOOL, ("debug", "trace"))
    add("js jetstream", _BOOL, "jetstream")
    add("sd store_dir", _STR, "store_dir")
    add("user", _STR, "username")
    add("pass", _STR, "password")
    add("auth", _STR, "authorization")
    add("tls", _BOOL, "tls")
    add("tlsverify", _BOOL, "tls_verify")
    add("tlscert", _STR, "tls_cert")
    add("tlskey", _STR, "tls_key")
    add("tlscacert", _STR, "tls_ca_cert")
    add("routes", _STR, _ROUTES)
    add("cluster cluster_listen", _STR, _CLUSTER)
    add("cluster_name", _STR, "cluster_name")
    add("cluster_advertise", _STR, "cluster_advertise")
    add("no_advertise", _BOOL, "cluster_no_advertise")
    add("connect_retries", _INT, "connect_retries")
    add("h help", _BOOL, _HELP)
    add("v version", _BOOL, _VERSION)
    add("help_tls", _BOOL, _HELP_TLS)
    return table


FLAGS = _flags()

# strconv.ParseBool's spellings.
_GO_BOOLS = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
             "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}


def parse_command_line(argv: List[str]) -> CommandLine:
    """argv (without the program name) -> CommandLine; raises UsageError."""
    cmd = CommandLine(argv=list(argv))
    wants = set()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if len(arg) < 2 or arg[0] != "-":
            break
        i += 1
        if arg == "--":
            break
        name = arg[2:] if arg.startswith("--") else arg[1:]
        if not name or name[0] in "-=":
            raise UsageError("bad flag syntax: %s" % arg)
        value = None
        if "=" in name:
            name, value = name.split("=", 1)
        spec = FLAGS.get(name)
        if spec is None:
            raise UsageError("flag provided but not defined: -%s" % name)
        kind, target = spec
        if kind == _BOOL:
            if value is None:
                v = True
            elif value in _GO_BOOLS:
                v = _GO_BOOLS[value]
            else:
                raise UsageError('invalid boolean value "%s" for -%s: parse error' % (value, name))
        else:
            if value is None:
                if i >= len(argv):
                    raise UsageError("flag needs an argument: -%s" % name)
                value = argv[i]
                i += 1
            v = value
            if kind == _INT:
                try:
                    v = int(value)
                except ValueError:
                    raise UsageError('invalid value "%s" for flag -%s: parse error'
                                     % (value, name)) from None
        _record(cmd, wants, name, target, v)
    if i < len(argv):
        raise UsageError('unrecognized command: "%s"' % argv[i])
    # nats-server's order: version, help, TLS help, then signal
    for want, action in ((_VERSION, "version"), (_HELP, "help"), (_HELP_TLS, "help_tls"),
                         (_SIGNAL, "signal"), (_CHECK, "check")):
        if want in wants:
            cmd.action = action
            break
    return cmd


def _record(cmd: CommandLine, wants: set, name: str, target, v):
    if target in (_HELP, _VERSION, _HELP_TLS, _CHECK):
        if v:
            wants.add(target)
        else:
            wants.discard(target)
    elif target == _CONFIG:
        cmd.config_file = v
    elif target == _SIGNAL:
        sig, _, pid = v.partition("=")
        if sig not in SIGNALS or SIGNALS[sig] is None:
            raise UsageError('unknown signal "%s" (use one of: %s)'
                             % (sig, ", ".join(sorted(SIGNALS))))
        cmd.signal, cmd.signal_pid = sig, pid
        wants.add(_SIGNAL)
    elif target == _CLUSTER:
        cmd.flags.update(_cluster_url(name, v))
    elif target == _ROUTES:
        cmd.flags["routes"] = _routes(name, v)
    elif isinstance(target, tuple):
        for t in target:
            cmd.flags[t] = v
    else:
        if target.endswith("port") and isinstance(v, int) and not -1 <= v <= 65535:
            raise UsageError('invalid value "%d" for flag -%s: port out of range' % (v, name))
        cmd.flags[target] = v


def _cluster_url(name: str, url: str) -> dict:
    """--cluster nats://[user:pass@]host:port -> the cluster listener fields
    (port -1: any free port, as test harnesses ask)."""
    random_port = url.rstrip("/").endswith(":-1")
    checked = url.rstrip("/")[:-3] + ":0" if random_port else url
    problem = check_url(checked, "cluster")
    if problem:
        raise UsageError('invalid value "%s" for flag -%s: %s' % (url, name, problem))
    u = urlsplit(checked)
    if u.port is None:
        raise UsageError('invalid value "%s" for flag -%s: missing port' % (url, name))
    out = {"cluster_host": u.hostname or DEFAULT_HOST,
           "cluster_port": -1 if random_port else u.port}
    if u.username is not None:
        out["cluster_username"] = unquote(u.username)
        out["cluster_password"] = unquote(u.password or "")
    return out


def _routes(name: str, text: str) -> list:
    """--routes "url1, url2" -> ["url1", "url2"]."""
    routes = [r.strip() for r in text.strip().strip("[]").split(",") if r.strip()]
    for r in routes:
        problem = check_url(r, "route")
        if problem:
            raise UsageError('invalid value "%s" for flag -%s: %s' % (text, name, problem))
    return routes


def build_options(cmdline: CommandLine) -> Options:
    """Defaults <- config file <- the flags given on the command line.
    Raises ConfigError for a bad or missing config file."""
    opts = Options()
    if cmdline.config_file:
        apply_config(opts, parse_file(cmdline.config_file), cmdline.config_file)
    for name, value in cmdline.flags.items():
        setattr(opts, name, value)
    if opts.tls_verify:
        opts.tls = True
    if opts.port == 0:
        opts.port = DEFAULT_PORT
    opts.cmdline = cmdline          # a reload re-runs build_options with it
    return opts


def version_line() -> str:
    return "%s: v%s (release %s)" % (SERVER_NAME, VERSION, RELEASE)


def _err(msg: str):
    sys.stderr.write("%s: %s\n" % (SERVER_NAME, msg))


def _resolve_pid(cmdline: CommandLine) -> int:
    """The target of --signal: NAME=PID, NAME=/path/to/pidfile, else the pid
    file from -P or the config file. Raises ValueError with the message."""
    ref = cmdline.signal_pid
    if not ref:
        ref = cmdline.flags.get("pid_file", "")
        if not ref and cmdline.config_file:
            ref = build_options(cmdline).pid_file
        if not ref:
            raise ValueError("no process to signal: give %s=PID, or a pid file with "
                             "-P or pid_file in the config" % cmdline.signal)
    if ref.isdigit():
        return int(ref)
    try:
        with open(ref) as f:
            text = f.read().strip()
    except OSError:
        raise ValueError("invalid pid: %s" % ref) from None
    if not text.isdigit():
        raise ValueError("invalid pid in %s: %r" % (ref, text[:20]))
    return int(text)


def run_signal(cmdline: CommandLine) -> int:
    """Send cmdline.signal to the running server; 0 on success, 1 (after an
    error line on stderr) otherwise."""
    try:
        pid = _resolve_pid(cmdline)
    except (ValueError, ConfigError) as e:
        _err(str(e))
        return 1
    try:
        os.kill(pid, SIGNALS[cmdline.signal])
    except ProcessLookupError:
        _err("no such process: %d" % pid)
        return 1
    except OSError as e:
        _err("cannot signal %d: %s" % (pid, e.strerror or e))
        return 1
    return 0


def main_options(argv: List[str]) -> Options:
    """Everything the entry point needs before starting the server: prints
    help/version/TLS help and exits 0, sends --signal and exits, prints a
    usage or config error and exits 1; otherwise returns the Options (with
    opts.cmdline kept for reload)."""
    try:
        cmd = parse_command_line(argv)
    except UsageError as e:
        sys.stderr.write("%s\n%s\n" % (e, USAGE_HINT))
        sys.exit(1)
    if cmd.action == "help":
        sys.stdout.write(USAGE)
        sys.exit(0)
    if cmd.action == "version":
        print(version_line())
        sys.exit(0)
    if cmd.action == "help_tls":
        sys.stdout.write(TLS_HELP)
        sys.exit(0)
    if cmd.action == "signal":
        sys.exit(run_signal(cmd))
    try:
        opts = build_options(cmd)
    except ConfigError as e:
        _err(str(e))
        sys.exit(1)
    if cmd.action == "check":
        if cmd.config_file:
            print("%s: configuration file %s is valid" % (SERVER_NAME, cmd.config_file))
        else:
            print("%s: no configuration file given; the options are valid" % SERVER_NAME)
        sys.exit(0)
    return opts
