"""agentid_daemon: the per-user token daemon ``agentid-helperd``.

Sub-packages, lowest layer first; a package imports only from the layers
below it (import-linter contracts in pyproject.toml; docs/INTERNALS.md):

- ``core``: errors, immutable models, logging with redaction, metrics, the
  trusted-file reader: what every layer shares.
- ``config``: the config file (schema, values, validation), resolving a
  request into a :class:`~agentid_daemon.core.models.TokenRequest`, reload.
- ``cache``: the token cache (single-flight, refresh-ahead, backoff, bounds).
- ``idp``: the identity provider through MSAL: one method per Entra leg,
  credentials, MSAL's HTTP, results and AADSTS hints.
- ``broker``: turns a request into a served token through cached legs
  (T1, T2, OBO sessions, a managed identity as credential); status rows.
- ``server``: HTTP/1.1 over trio with h11, the Unix socket listener, peers.
- ``process``: the process itself: limits, run mode, sd_notify, start report.
- ``identity_endpoint``: the managed identity endpoint on loopback TCP.
- ``sidecar_api``: Microsoft's Agent ID sidecar HTTP API on loopback TCP.
- ``provision``: agent identities and agent users through Microsoft Graph.
- ``api``: the daemon's HTTP API routes and request bodies.
- ``app``: wires it all together (``agentid-helperd``).
"""
