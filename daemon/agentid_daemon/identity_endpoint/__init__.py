"""The managed identity endpoint on loopback TCP (for the Azure SDKs).

- :mod:`.protocol`: the App Service managed identity protocol, sans-IO.
- :mod:`.endpoint`: the request handler (one GET path, per-session header).
- :mod:`.sessions`: which header gets which token, listeners and their files.
- :mod:`.loopback_peers`: whose connection it is (sock_diag), admission.
- :mod:`.service`: :class:`IdentitySessions`, the endpoint as one service (its
  listeners, server and sessions together).
"""
