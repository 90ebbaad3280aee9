"""The broker: a :class:`TokenRequest` -> a served token, through cached legs.

- :mod:`.broker`: :class:`Broker`, the legs of each mode.
- :mod:`.seams`: the engine protocol it drives and :class:`ServedToken`.
- :mod:`.calls`: every leg's identity-provider call (counted, logged, in a
  worker thread), handed to the legs as ``call``; the assertion rules.
- :mod:`.exchange_legs` (T1, T2), :mod:`.obo_legs` with :mod:`.obo_sessions`
  (long-running OBO), :mod:`.mi_legs` (a managed identity as credential).
- :mod:`.status`: ``GET /v1/status`` rows; :mod:`.recent_errors`.
- :mod:`.replication_wait`: retrying "not found" for agents created here lately.
"""
