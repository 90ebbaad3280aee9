"""The configuration: file -> :class:`Config` -> :class:`TokenRequest`.

- :mod:`.loader`: :func:`load_config`, :class:`Config` and its ``resolve``.
- :mod:`.schema`: one table of every key; :mod:`.values` their validators and
  frozen values; :mod:`.file` validates a parsed file against the schema.
- :mod:`.fields`: validators shared by the file and requests (GUIDs, tenants,
  listen addresses); :mod:`.scopes`: scope normalisation per mode;
  :mod:`.claims`: claims challenges and client capabilities.
- :mod:`.resolve_memo`: the bounded memo of resolved requests (cache hits).
- :mod:`.watch`: noticing a changed file, for reload.
- :mod:`.sidecar_env`: configuration the Agent ID sidecar's way (environment).
- :mod:`.verdict`: the file as the daemon reads it, in JSON, for the client's
  ``doctor`` (run as ``python -m``: the client never imports the daemon).
"""
