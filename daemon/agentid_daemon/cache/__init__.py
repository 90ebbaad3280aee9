"""The in-memory token cache.

- :mod:`.token_cache`: :class:`TokenCache`: single-flight, refresh-ahead,
  backoff, idle expiry, bounds (the policy is its docstring).
- :mod:`.entry`: per-key state; :mod:`.schedule`: when the cache acts on a key.
- :mod:`.refresh_rule`: when a token is refreshed ahead (trio-free: the engine
  host applies it too).
"""
