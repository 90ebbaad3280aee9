"""agentid_daemon."""
