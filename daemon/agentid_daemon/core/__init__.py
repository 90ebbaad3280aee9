"""What every layer shares; imports nothing of the daemon.

- :mod:`.errors`: :class:`AgentIdError` and its kinds (HTTP status, API code).
- :mod:`.models`: :class:`TokenRequest`, :class:`CacheKey`, :class:`Mode` and
  the other immutable values passed between layers.
- :mod:`.logs`: structlog configuration, redaction before rendering.
- :mod:`.metrics`: the Prometheus text registry.
- :mod:`.secret_files`: reading files the daemon trusts (file-trust rule).
- :mod:`.clock`: trio time -> epoch seconds at the edge, the one conversion.
"""
