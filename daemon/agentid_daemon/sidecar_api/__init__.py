"""Microsoft's Agent ID sidecar HTTP API on loopback TCP, served by this daemon.

Apps written for Microsoft's "Entra SDK for AgentID" container
(AzureAD/microsoft-identity-web, ``src/Microsoft.Identity.Web.Sidecar``) run
unchanged against ``[daemon] sidecar_api_listen``.

- :mod:`.binding`: routes, query binding, overrides -> token selection (sans-IO).
- :mod:`.endpoint`: the handler (tokens through the broker, answers).
- :mod:`.validation`: bearer validation (PyJWT, OIDC discovery, JWKS).
- :mod:`.downstream`: the downstream API call.
- :mod:`.problems`: RFC 7807 ProblemDetails.
- :mod:`.service`: its listener, server and admission.
"""
