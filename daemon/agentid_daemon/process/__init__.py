"""The daemon's process: how it runs, what it tells systemd and its starter.

- :mod:`.limits`: no core dumps, the descriptor limit and connection count.
- :mod:`.runmode`: systemd unit, autostarted or foreground; the process name.
- :mod:`.sdnotify`: sd_notify and the ``STATUS=`` line.
- :mod:`.start_report`: how the start went, to the client that autostarted it.
- :mod:`.engine_fork`: an autostarted daemon's first act: fork the engine host.
- :mod:`.engine_host`: an autostarted daemon's first engine calls, answered by the forked child.
- :mod:`.first_answer`: the forked child answers the autostarting client's request itself.
- :mod:`.first_request`: the parent judges that request for it, right after the fork.
- :mod:`.inherited`: the descriptors an autostarting client hands its daemon.
"""
