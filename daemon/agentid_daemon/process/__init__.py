"""The daemon's process: how it runs, what it tells systemd and its starter.

- :mod:`.limits`: no core dumps, the descriptor limit and connection count.
- :mod:`.runmode`: systemd unit, autostarted or foreground; the process name.
- :mod:`.sdnotify`: sd_notify and the ``STATUS=`` line.
- :mod:`.start_report`: how the start went, to the client that autostarted it.
- :mod:`.warmup`: the autostarting client's profile's MSAL clients, built while the daemon starts.
"""
