"""The managed identity endpoint on loopback TCP (for the Azure SDKs).

- :mod:`.protocol`: the App Service managed identity protocol, sans-IO.
- :mod:`.endpoint`: the request handler (one GET path, per-session header).
- :mod:`.sessions`: which header gets which token, listeners and their files.
- whose connection it is (sock_diag) and admission: :mod:`agentid_daemon.server.loopback_peers`
  (shared with :mod:`agentid_daemon.sidecar_api`).
- :mod:`.service`: :class:`IdentitySessions`, the endpoint as one service (its
  listeners, server and sessions together).
"""
