"""HTTP/1.1 over trio streams (h11), and the Unix socket it listens on.

- :mod:`.protocol`: :class:`HttpServer`, :class:`Limits`: connections,
  limits, graceful shutdown; :mod:`.connections`: per-connection state.
- :mod:`.responses`: :class:`Response` values and their heads.
- :mod:`.listener`: the Unix socket (path rules, stale sockets, systemd fds,
  peer credentials); :mod:`.peer_process`: a pidfd for the peer.
- :mod:`.loopback_peers`: a loopback TCP peer's uid (sock_diag) and the
  admission of the loopback TCP endpoints (managed identity, sidecar API).
"""
