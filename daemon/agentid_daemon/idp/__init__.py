"""The identity provider (Entra) through MSAL: one token request per call.

- :mod:`.engine`: :class:`Engine`, one sync method per leg (T1, T2, OBO,
  AutonomousApp, user_fic, managed identity), run in worker threads.
- :mod:`.credentials`: a :class:`CredentialSpec` -> MSAL's ``client_credential``;
  :mod:`.managed_identity`: a managed identity as the blueprint's credential;
  :mod:`.managed_identity_key`: its cache key, without MSAL.
- :mod:`.msal_http`: the HTTP pieces handed to MSAL, each defusing one trap.
- :mod:`.results`: MSAL results -> :class:`AcquiredToken` or an error;
  :mod:`.hints`: one-line hints for common AADSTS codes.
"""
