"""Provisioning through Microsoft Graph: agent identities and agent users of a
profile's blueprint, and ``init``, which creates the blueprint itself.

- :mod:`.graph`: Graph beta requests and their OData errors.
- :mod:`.blueprint`: a profile's blueprint and its own Graph token.
- :mod:`.service`: the operations behind ``/v1/agents`` and ``/v1/agent-users``.
- :mod:`.profile_file`: ``--save-profile`` and ``init``'s profiles (tomlkit,
  comments kept, atomic).
- :mod:`.init`: ``agentid-helper init``, run by the client as ``python -m``;
  :mod:`.init_answers` (questions and checks), :mod:`.admin_signin` (device
  code or a token file), :mod:`.init_credentials` (the blueprint's
  credential), :mod:`.init_flow` (the steps and what a failure leaves).
"""
