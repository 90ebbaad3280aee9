"""The daemon's HTTP API on its Unix socket (docs/api.md).

- :mod:`.routes`: :class:`Api`: routes -> broker and config calls -> responses.
- :mod:`.bodies`: request bodies: strict, value-blind JSON validation.
- :mod:`.agents`: ``/v1/agents`` and ``/v1/agent-users`` (provisioning).
"""
