"""Provisioning through Microsoft Graph: agent identities and agent users of a
profile's blueprint.

- :mod:`.graph`: Graph beta requests and their OData errors.
- :mod:`.blueprint`: a profile's blueprint and its own Graph token.
- :mod:`.service`: the operations behind ``/v1/agents`` and ``/v1/agent-users``.
- :mod:`.profile_file`: ``--save-profile`` (tomlkit, comments kept, atomic).
"""
