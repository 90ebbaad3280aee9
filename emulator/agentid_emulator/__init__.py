"""agentid_emulator: a local Microsoft Entra emulator for agent identities.

An offline authority that speaks Entra's dialect well enough for MSAL, for the
demo, the tests, benchmarks, and developers building agents without a tenant::

    agentid-helper-emulator --demo --port 8443 --ready-file ready.json

It serves HTTPS on 127.0.0.1 with a CA it generates (``<state-dir>/ca.pem``;
the server certificate has SAN IP:127.0.0.1 and DNS:localhost).

Using it from MSAL Python
-------------------------
MSAL validates authorities it does not know through Microsoft's instance
discovery endpoint on login.microsoftonline.com, which is neither reachable
offline nor aware of 127.0.0.1. Build every application with
``instance_discovery=False``; MSAL then reads
``{authority_host}/{tenant}/v2.0/.well-known/openid-configuration`` directly::

    msal.ConfidentialClientApplication(
        client_id, client_credential=..., authority=f"{authority_host}/{tenant_id}",
        instance_discovery=False, http_client=session_trusting_ca_pem)

``REQUESTS_CA_BUNDLE`` overrides a requests session's ``verify``; to trust
``ca.pem`` whatever the environment says, use a ``requests.Session`` subclass
whose ``merge_environment_settings`` forces ``verify`` (see
tests/support/emulator_msal_helpers.py, ``PinnedSession``).

Managed identity
----------------
``--imds-port 0`` adds IMDS's token endpoint on plain HTTP; the ready file
gives ``imds_endpoint``, ``managed_identity_client_id`` and
``managed_identity_object_id``, and the demo blueprint trusts that identity::

    AZURE_POD_IDENTITY_AUTHORITY_HOST=<imds_endpoint>   # MSAL and azure-identity
    msal.ManagedIdentityClient(msal.UserAssignedManagedIdentity(client_id=...),
                               http_client=requests.Session()
                               ).acquire_token_for_client(resource="api://AzureADTokenExchange")

Modules
-------
certs (CA, server certificate, signing key), directory (demo and TOML seeds),
jwt_tokens (minting, JWKS, verification), scopes (scope -> resource),
client_auth (secret / certificate / federated / T1 client authentication),
legs (the token endpoint, sans-IO), agent_claims (the agent facets of real
tokens), user_tokens (signed-in users' tokens, the input of OBO),
refresh_tokens (OBO refresh tokens, revocations), claims_param (the
``claims`` parameter), imds (the
managed identity endpoint), errors (AADSTS shapes), faults, stats, workload
(the emulator's own federated-token issuer), graph_routes (Microsoft Graph
beta for provisioning, sans-IO), graph_tokens (Graph's bearer checks),
replication (the lag before Graph writes reach the token endpoint),
device_codes (the device code flow), leg_checks (each leg's checks, in
Entra's order), token_minting (each leg's claims and response bodies),
seed_file (the TOML seed format), demo_config (the demo's client config),
admin_routes (the loopback admin API, sans-IO), emulator_state (what the
handlers share), server (HTTP I/O), tcp (TCP_NODELAY on accepted
connections), cli (and __main__).

Microsoft Graph (provisioning)
------------------------------
The ready file's ``graph_endpoint`` (``{authority_host}/graph``) serves the
Graph beta APIs that create agent identity blueprints, their secrets,
federated credentials and principals, agent identities and agent users; a
client calls ``{graph_endpoint}/beta/...`` with a bearer token the emulator
issued for ``https://graph.microsoft.com``. Objects created there reach the
token endpoint after ``--replication-delay-s`` (default 0). Endpoints, the
permissions each needs and the Graph reference pages they follow are in
graph_routes' docstring.

The admin endpoints (``/_emulator/...``: stats, faults, reset, user and
federated tokens, device code approval) are unauthenticated: anyone who can reach 127.0.0.1 can mint
tokens with them. The emulator is for one developer's machine, never a shared
host.

Fidelity
--------
Each choice names what it follows. "Docs" are MicrosoftDocs/entra-docs files
under ``docs/agent-id/identity-platform/`` unless a path is given; "recorded"
tokens are public decodings of real tokens: "AgenticTokens from Console" (T1,
T2 and an agent user's Graph token) and joetanx/mslab
``entra/agent-id/auth-flows.md`` (every token of a tenant walk-through).

Emulated faithfully:

- OIDC discovery per tenant GUID (issuer ``{authority_host}/{tenant}/v2.0``,
  token/authorize/JWKS endpoints) and JWKS (RS256, ``kid``); a tenant it does
  not know gets AADSTS90002 (400) from discovery and the token endpoint.
- The five agent legs, with MSAL 1.39's exact requests
  (agent-oauth-protocols.md, agent-autonomous-app-oauth-flow.md,
  agent-user-oauth-flow.md): T1 (blueprint client_credentials + ``fmi_path``
  + ``api://AzureADTokenExchange/.default``, authenticated by secret, by
  certificate assertion (x5t or x5t#S256, RS256 or PS256, ``iss``=``sub``=
  client_id, ``aud``=token endpoint, expiry) or by a federated assertion
  matched to a federated identity credential on issuer, audience and subject);
  AutonomousApp and T2 (agent client_credentials with a T1 client assertion:
  signature by this emulator, issuer of this tenant, ``aud``
  fb60f99c-7a34-4190-8149-302f77469936, unexpired, ``sub`` =
  ``/eid1/c/pub/t/<tenant>/a/<blueprint>/<agent>``, as recorded); user_fic
  (T1 client assertion + T2 of the same agent + an agent user of that agent by
  ``username`` or ``user_id``).
- OBO (agent-on-behalf-of-oauth-flow.md: "Tc (aud) == Agent ID blueprint
  client ID"): the user token must be signed here, unexpired, for an existing
  user, with ``aud`` = the agent's blueprint app id or ``api://<blueprint>``;
  the agent identity's own id (which exposes no API) or anything else gets
  AADSTS50013 with Entra's wording. ``/_emulator/users/token`` issues for the
  blueprint by default with ``scp`` = ``access_agent``, as the recorded client
  token (auth-flows.md 5.2.3) for ``api://<blueprint>/access_agent``.
- The blueprint's own app-only token: client_credentials for a resource
  scope without ``fmi_path`` (create-delete-agent-identities.md, "Get an
  access token using agent identity blueprint"), with the blueprint's seeded
  ``roles`` (the demo has the recorded AgentIdentity.CreateAsManager and
  AgentIdUser.ReadWrite.IdentityParentedBy); ``fmi_path`` stays required for
  the token-exchange scope.
- Agent claims ``xms_act_fct``, ``xms_sub_fct``, ``xms_idrel`` and
  ``xms_par_app_azp`` with the recorded values (agent_claims): T1, T2 and the
  agent user token from "AgenticTokens from Console"; the blueprint's own,
  the AutonomousApp and the OBO token from auth-flows.md.
- Managed identity (``--imds-port``): Azure IMDS's token endpoint as
  docs/identity/managed-identities-azure-resources/how-to-use-vm-token.md
  specifies it (GET, ``Metadata: true`` or 400 ``bad_request_102``,
  ``api-version``, ``resource``, ``client_id``/``object_id``/``msi_res_id``;
  string ``expires_in``/``expires_on``; JSON ``error``/``error_description``),
  reached by MSAL's ``ManagedIdentityClient`` through
  ``AZURE_POD_IDENTITY_AUTHORITY_HOST``. Its token for
  ``api://AzureADTokenExchange`` has ``aud`` = the exchange app id, ``iss`` =
  the tenant's v2.0 issuer, ``sub`` = ``oid`` = the identity's object id, and
  a blueprint trusts it through a federated identity credential (issuer = the
  tenant issuer, subject = the object id, audience
  ``api://AzureADTokenExchange``), as agent-on-behalf-of-oauth-flow.md's
  ``TUAMI`` and auth-flows.md 2.1.B show.
- Refresh tokens for OBO (refresh_tokens): an OBO request whose scope has
  ``offline_access`` (MSAL's ``acquire_token_on_behalf_of`` always adds it)
  gets an opaque ``1.A...`` refresh token bound to the agent and the user,
  and an agent identity redeems it with ``grant_type=refresh_token`` and T1
  as its client assertion, as agent-on-behalf-of-oauth-flow.md ("Refresh
  token support") shows; MSAL's ``acquire_token_by_refresh_token`` sends
  exactly that. Each answer carries a new refresh token; a redeemed one
  stays valid (Entra does not make them single-use). Errors: 9002313
  (unknown), 70000 (another client's), 700082 (expired, 90 days).
- ``claims`` (claims_param): MSAL merges a claims challenge
  (``claims_challenge=``) and ``client_capabilities`` into one ``claims``
  parameter (msal/application.py ``_merge_claims_challenge_and_capabilities``:
  ``{"access_token": {"xms_cc": {"values": [...]}}}``); the emulator stamps
  those capabilities into the access token's ``xms_cc`` claim, as Entra does
  for CAE-capable clients, and refuses a ``claims`` that is not a JSON object
  (9002313). Every answer is minted afresh, so a request with claims never
  gets a token back that was revoked.
- Revocation: ``POST /_emulator/faults {"revoke_token": "<token>"}`` revokes an
  access token (by its ``uti``, as a CAE revocation event would) or a refresh
  token; ``POST /_emulator/tokens/introspect {"token": ...}`` tells a resource
  stub whether a token is active and revoked (what a CAE resource learns from
  its revocation events), so the stub can answer with a claims challenge.
- Token claims shaped like Entra v2.0 tokens (see jwt_tokens/legs), responses
  with ``token_type``, ``expires_in``, ``ext_expires_in``, ``refresh_in``
  (lifetime/2 when the lifetime is >= 2 h, or ``--refresh-in-s``), and for user
  legs ``id_token``/``client_info`` so MSAL records the account.
- Errors in Entra's JSON shape and status (401 for invalid_client), the
  client's ``client-request-id`` echoed as correlation id, ``{EmailHidden}``
  in user-not-found messages. Codes: 7000215, 7000216, 700016, 700021, 700024,
  700027, 700211, 700212, 700213, 7002137, 50013, 50027, 50034, 500011,
  500133, 1002012, 70011, 28000, 900144, 70003, 90002, 9002313, 70000,
  700082, 70016, 70019; faults use 90055 (429) and 90033 (5xx).
- client_secret_post and client_secret_basic.
- Microsoft Graph beta for provisioning (graph_routes, graph_tokens): bearer
  tokens checked as Graph does (signature, ``aud`` Graph or
  00000003-0000-0000-c000-000000000000, expiry, issuer and tenant; ``roles``
  for app-only, ``scp`` for delegated tokens; 401
  ``InvalidAuthenticationToken``, 403 ``Authorization_RequestDenied`` naming
  the permissions the API takes), create-blueprint.md,
  create-delete-agent-identities.md, agent-users.md and the Graph beta
  reference (microsoftgraph/microsoft-graph-docs-contrib
  ``api-reference/beta/resources/agentidentityblueprint.md``,
  ``agentidentityblueprintprincipal.md``, ``agentidentity.md``,
  ``agentuser.md``): a blueprint principal gets
  ``AgentIdentity.CreateAsManager``, with which the blueprint's own token
  creates, lists and deletes agent identities of its own blueprint only;
  sponsors must be users of the tenant (by id or UPN); 250 agent identities
  per blueprint; GUIDs and ``displayName`` (1-256 characters) checked; an
  agent user's UPN must be in a domain of the tenant, it has no password and
  is the only one of its agent identity (agent-users.md: one-to-one, "can't
  have credentials like passwords"), and a blueprint creates one only with
  AgentIdUser.ReadWrite.IdentityParentedBy, which it "doesn't have ... by
  default". Errors in Graph's OData
  shape with a ``request-id`` header; ``client-request-id`` echoed. A token
  with Directory.AccessAsUser.All or Directory.ReadWrite.All is refused Agent
  ID writes (the "known issue" of ``api-reference/beta/includes/rbac-for-apis/
  rbac-agentid-apis-write.md``).
- Replication delay (replication): until ``--replication-delay-s`` has
  passed, the token endpoint answers for a new application as for an unknown
  one (AADSTS700016) and for a new user as for an unknown user (AADSTS50034).
- The device code flow (device_codes): ``/{tenant}/oauth2/v2.0/devicecode``,
  ``authorization_pending`` (AADSTS70016) until
  ``POST /_emulator/devicecode/approve {"user_code", "upn"}``, then a
  delegated token for that user (never an agent user, which has no
  interactive sign-in) with the scopes asked for; ``expired_token``
  (AADSTS70019); for Azure CLI's and Microsoft Graph PowerShell's public
  client ids (others: AADSTS700016).

Still different from real tokens and Entra (deliberately or not yet):

- Every token is a v2.0 token signed by one key and issued by
  ``{authority_host}/{tenant}/v2.0``; real resource tokens for Graph are v1.0
  (``iss`` ``https://sts.windows.net/<tenant>/``, ``appid`` but no ``azp``).
- Recorded claims not emitted: ``aio``, ``rh``, ``uti`` format, ``xms_ftd``,
  ``xms_rd``, ``xms_tcdt``, ``xms_tnt_fct``, ``xms_ficinfo``, ``xms_st``,
  ``xms_mirid`` on resource tokens, ``wids``, ``acr``/``acrs``/``amr``,
  ``sid``, ``puid``, ``ipaddr``, ``platf``, ``tenant_region_scope``,
  ``app_displayname``. The recorded OBO and agent user tokens' ``scp`` also
  lists ``profile openid email``; the emulator grants what was asked.
- The two recordings come from different tenants whose tenant facet differs
  (``1`` vs ``3`` in ``xms_act_fct``/``xms_sub_fct``); each token keeps its
  recording's values.
- Object ids of service principals equal the application ids (real blueprint
  and agent tokens carry the principal's own ``oid``); ``sub`` of user tokens
  is a stable pairwise hash, not Entra's exact algorithm.
- A user token for the blueprint is minted with the ``aud`` asked for
  (``api://<blueprint>`` stays a URI); a real v2.0 token always carries the
  app id. It also carries ``upn``/``unique_name`` (v1.0 names) besides
  ``preferred_username``, and its client is Azure CLI's public client id.
- Graph: only the provisioning APIs above; Graph reads see a write at once
  (real Graph reads lag too); no directory roles (Agent ID Administrator /
  Developer) are checked for delegated callers, only ``scp``; the
  ``OData-Version: 4.0`` header the docs send is required for creating an
  agent identity; blueprint principals and agent identities have object ids
  of their own but an agent identity's ``appId`` is its ``id``; a blueprint
  without a principal is unknown to the token endpoint (AADSTS700016 where
  Entra says AADSTS7000229); the tenant's domains are those of its seeded
  human users; sponsors are users only (no groups); the 250-agent limit per
  blueprint is a service limit the cited pages do not state. Device code
  ``interval`` is 1 s (Entra: 5 s) and no refresh
  token is issued by it.
- Interactive flows (authorize), refresh tokens other than
  OBO's (no refresh token for user_fic, none for interactive sign-in), ROPC, SAML,
  the v1.0 endpoint, ``common``/``organizations`` and tenant domain names
  (tenant GUIDs only), instance discovery, regional endpoints.
- Managed identity only in IMDS's shape (not App Service, Arc, Service
  Fabric) and only user-assigned identities (a request naming none gets the
  only one, as on a VM with a single user-assigned identity); its tokens live
  ``--token-lifetime-s`` (IMDS's about 24 h); IMDS's 404/410/429/500 answers,
  faults and the system-assigned identity are not emulated.
- Consent and permission grants: any resource URI is accepted; ``/.default``
  yields the seeded ``roles`` (app) or ``User.Read`` / ``user_impersonation``
  (delegated). Resource-specific checks (AADSTS500011 at the token endpoint),
  consent (65001) and ``InheritDelegatedPermissions`` are not modelled.
- Conditional Access policies: the claims of a challenge (``nbf``, ``acrs``)
  are accepted, never evaluated; CAE-capable tokens live ``--token-lifetime-s``
  like the others (Entra gives them up to 28 h); token protection, PoP
  tokens, encrypted tokens.
- Clock skew: assertions are checked without leeway (Entra allows ~5 min), so
  that short test lifetimes expire when they say.
- Error codes outside the list above may differ from Entra's for the same
  condition (Entra's exact choice is not always documented).
- Throttling is only what ``/_emulator/faults`` injects (token endpoint only).
"""
