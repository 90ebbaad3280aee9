"""agentid_client: the stdlib-only ``agentid-helper`` command-line client."""

__version__ = "0.1.0"
