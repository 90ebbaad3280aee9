"""Canonical texts of the systemd user units (stdlib only, no data files).

These are byte-for-byte the repository's ``systemd/agentid-helper.socket`` and
``systemd/agentid-helper.service`` (tests/test_systemd_units.py checks it):
edit both together. ``systemd_units`` renders them for installation.
"""

SOCKET_TEMPLATE = """\
# agentid-helper: socket activation (systemd user unit).
# Install with `agentid-helper systemd install --now`; see docs/systemd.md.
#
# The user manager owns the listening socket, so the daemon can restart (crash,
# upgrade, watchdog) without a client ever seeing "connection refused":
# connections made meanwhile wait in the backlog until the new daemon accepts.

[Unit]
Description=agentid-helper credential socket (Entra agent identity tokens)
Documentation=man:agentid-helper(1)

[Socket]
# The public socket path ($XDG_RUNTIME_DIR/agentid-helper/agentid-helper.sock).
ListenStream=%t/agentid-helper/agentid-helper.sock
# systemd's defaults are 0666 (socket) and 0755 (directory): never rely on them.
# The daemon also refuses peers of another uid (SO_PEERCRED), this is the first fence.
SocketMode=0600
DirectoryMode=0700
# The daemon picks its socket by this name from $LISTEN_FDNAMES.
FileDescriptorName=agentid-helper
# One long-running daemon for all connections (not one process per connection).
Accept=no
# Remove the socket file when the unit stops (uninstall, logout), so that a stale
# node never sits where a client or a self-started daemon expects a live one.
RemoveOnStop=yes

[Install]
WantedBy=sockets.target
"""

SERVICE_TEMPLATE = """\
# agentid-helper: the token daemon (systemd user unit), started by
# agentid-helper.socket on the first connection.
# Install with `agentid-helper systemd install --now`; see docs/systemd.md.
# `agentid-helper systemd install` writes this file with ExecStart= pointing at
# this installation's agentid-helperd; to change settings use
# `systemctl --user edit agentid-helper.service` (a drop-in survives reinstalls).

[Unit]
Description=agentid-helper credential daemon (Entra agent identity tokens)
Documentation=man:agentid-helper(1)
Requires=agentid-helper.socket
After=agentid-helper.socket
# A service that cannot start (a moved venv: 203/EXEC, a bad config) must not
# restart forever while every client waits: after 3 failed starts in 30 s
# systemd gives up, agentid-helper.socket fails with it, and clients exit 3 at
# once with a pointer to `systemctl --user status agentid-helper`.
StartLimitIntervalSec=30s
StartLimitBurst=3

[Service]
Type=notify
# Only the main process may send sd_notify messages (READY, WATCHDOG, STOPPING).
NotifyAccess=main
ExecStart=%h/.local/bin/agentid-helperd
# SIGHUP re-reads config.toml (a bad file is logged, the old one stays); tokens stay cached.
ExecReload=kill -HUP $MAINPID
Restart=on-failure
RestartSec=1s
# The daemon pings WATCHDOG=1 every WATCHDOG_USEC/2; a wedged trio loop is restarted.
WatchdogSec=30s
# On SIGTERM the daemon finishes in-flight requests for up to 10 s (its
# shutdown grace, 5 s below this); clients whose request is cut off retry on
# the next daemon, which systemd starts from the socket's backlog.
TimeoutStopSec=15s
Environment=PYTHONUNBUFFERED=1

# Headless secrets (servers, CI, no Secret Service): pass the blueprint secret
# as a systemd credential in a drop-in (`systemctl --user edit agentid-helper`)
#   [Service]
#   LoadCredential=blueprint-secret:%h/.config/agentid-helper/blueprint-secret
# and in config.toml (the daemon expands $CREDENTIALS_DIRECTORY):
#   blueprint_credential = { secret_file = "$CREDENTIALS_DIRECTORY/blueprint-secret" }
# See docs/systemd.md.

# ---- Hardening ------------------------------------------------------------
# The daemon needs: read access to its config (~/.config/agentid-helper), the
# inherited listening socket, the session D-Bus ($XDG_RUNTIME_DIR/bus) for the
# Secret Service keyring, outbound HTTPS to the identity provider. Nothing else.
# A user manager lacks the privileges for mount/UTS/IPC namespaces and the
# capability bounding set on its own; PrivateUsers=yes (a user namespace) is
# what makes those settings effective in a user unit. Where unprivileged user
# namespaces are unavailable (e.g. Ubuntu >= 23.10 AppArmor restriction), the
# install command adds a drop-in turning PrivateUsers= off; systemd then skips
# the namespace settings, the seccomp-based ones below still apply.
PrivateUsers=yes
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
ProtectSystem=strict
ProtectHome=read-only
# Only used when the daemon runs without socket activation and binds itself.
ReadWritePaths=-%t/agentid-helper
PrivateTmp=yes
PrivateDevices=yes
# Not PrivateIPC=yes: with PrivateUsers=yes the ExecReload= process cannot join
# the service's IPC namespace, and `systemctl --user reload` fails with
# 226/NAMESPACE. The daemon uses no System V IPC or POSIX message queues.
ProtectHostname=yes
ProtectClock=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
# AF_UNIX: clients and D-Bus; AF_INET/AF_INET6: HTTPS to Entra. glibc falls
# back cleanly when AF_NETLINK (getaddrinfo's AI_ADDRCONFIG probe) is refused.
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
LockPersonality=yes
# Python, cryptography (Rust/cffi without callbacks) and MSAL need no W+X memory;
# tests run the daemon under the kernel's equivalent (PR_SET_MDWE) to keep it so.
MemoryDenyWriteExecute=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
# ... except raising its own soft RLIMIT_NOFILE to the hard limit: each client
# connection is a descriptor, and 1024 would cap a burst of clients.
SystemCallFilter=setrlimit prlimit64
SystemCallErrorNumber=EPERM
PrivateMounts=yes
KeyringMode=private
UMask=0077
# No core files: the daemon's memory holds tokens and secrets (it also sets
# RLIMIT_CORE=0 and PR_SET_DUMPABLE=0 itself).
LimitCORE=0
# Left out on purpose:
# - RemoveIPC=, User=, DynamicUser=: system services only.
# - IPAddressDeny=/IPAddressAllow=: the identity provider's addresses are not
#   known in advance (and BPF firewalling needs a privileged manager).
# - PrivateNetwork=: the daemon must reach the identity provider.
# - ProtectProc=, ProcSubset=: system services only (a fresh procfs needs a PID
#   namespace a user manager cannot create); the daemon runs as the user anyway.
# - DevicePolicy=/DeviceAllow=: cgroup device BPF needs a privileged manager;
#   PrivateDevices= already gives an empty /dev.

[Install]
Also=agentid-helper.socket
"""
