"""The server's options: one flat object, filled from defaults, then the config
file, then the command line (which wins).

Durations are float seconds; sizes are int bytes.
"""

import copy
from dataclasses import dataclass, field
from typing import List, Optional

DEFAULT_PORT = 4222
DEFAULT_HOST = "0.0.0.0"
DEFAULT_CLUSTER_PORT = 6222
MAX_PAYLOAD = 1024 * 1024
MAX_CONTROL_LINE = 4096
MAX_CONNECTIONS = 64 * 1024
MAX_PENDING = 64 * 1024 * 1024
PING_INTERVAL = 120.0
PING_MAX = 2
WRITE_DEADLINE = 2.0
AUTH_TIMEOUT = 1.0
TLS_TIMEOUT = 2.0
LAME_DUCK_DURATION = 120.0
LAME_DUCK_GRACE = 10.0


@dataclass
class Options:
    # client listener
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    server_name: str = ""
    client_advertise: str = ""

    # monitoring
    http_host: str = ""          # empty: same as host
    http_port: int = 0
    https_port: int = 0

    # logging
    debug: bool = False
    trace: bool = False
    logtime: bool = True
    log_file: str = ""
    syslog: bool = False
    remote_syslog: str = ""

    # process
    pid_file: str = ""
    ports_file_dir: str = ""
    config_file: str = ""

    # limits
    max_connections: int = MAX_CONNECTIONS
    max_control_line: int = MAX_CONTROL_LINE
    max_payload: int = MAX_PAYLOAD
    max_pending: int = MAX_PENDING
    max_subscriptions: int = 0      # per connection; 0 = unlimited
    ping_interval: float = PING_INTERVAL
    ping_max: int = PING_MAX
    write_deadline: float = WRITE_DEADLINE

    # client authorization
    username: str = ""
    password: str = ""
    authorization: str = ""         # token
    users: List[dict] = field(default_factory=list)  # [{"user":..,"password":..}]
    auth_timeout: float = 0.0       # 0: AUTH_TIMEOUT, or the TLS timeout if larger

    # client TLS
    tls: bool = False
    tls_verify: bool = False
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca_cert: str = ""
    tls_timeout: float = TLS_TIMEOUT
    tls_cipher_suites: List[str] = field(default_factory=list)

    # cluster
    cluster_host: str = ""
    cluster_port: int = 0           # 0: no cluster listener
    cluster_name: str = ""
    cluster_advertise: str = ""
    cluster_no_advertise: bool = False
    cluster_username: str = ""
    cluster_password: str = ""
    cluster_auth_timeout: float = 0.0
    routes: List[str] = field(default_factory=list)
    cluster_tls: bool = False
    cluster_tls_verify: bool = False
    cluster_tls_cert: str = ""
    cluster_tls_key: str = ""
    cluster_tls_ca_cert: str = ""
    cluster_tls_timeout: float = TLS_TIMEOUT

    # lame duck
    lame_duck_duration: float = LAME_DUCK_DURATION
    lame_duck_grace_period: float = LAME_DUCK_GRACE

    def copy(self) -> "Options":
        return copy.deepcopy(self)

    def auth_required(self) -> bool:
        return bool(self.username or self.authorization or self.users)

    def effective_auth_timeout(self) -> float:
        t = self.auth_timeout or AUTH_TIMEOUT
        if self.tls and self.tls_timeout > t and not self.auth_timeout:
            t = self.tls_timeout
        return t
