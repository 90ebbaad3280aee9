"""Provisioning through Microsoft Graph: agent identities and agent users of a
profile's blueprint (graph.py: the requests; blueprint.py: the blueprint's token)."""
