"""ConfigWatch: a changed, new or removed config file is noticed; one stat a second."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentid_daemon.config import watch as config_watch
from agentid_daemon.config.watch import ConfigWatch, file_signature


def test_a_file_that_appears_changes_or_goes_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    watch = ConfigWatch(str(path), file_signature(str(path)))
    assert watch.served is None
    assert watch.changed(throttle=False) is False  # still absent
    path.write_text("")
    appeared = watch.changed(throttle=False)
    assert appeared is not False and appeared == file_signature(str(path))
    watch.loaded(appeared)
    assert watch.changed(throttle=False) is False
    replacement = tmp_path / "new.toml"
    replacement.write_text("")  # same size, renamed over the old one: another inode
    os.replace(replacement, path)
    renamed = watch.changed(throttle=False)
    assert renamed is not False
    watch.loaded(renamed)
    path.unlink()
    assert watch.changed(throttle=False) is None  # gone: a change to "absent"


def test_a_file_that_failed_is_not_tried_again_until_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("")
    watch = ConfigWatch(str(path), file_signature(str(path)))
    path.write_text("[broken\n")
    bad = watch.changed(throttle=False)
    assert bad is not False
    watch.tried(bad)  # the reload failed: the served file stays the old one
    assert watch.served != bad
    assert watch.changed(throttle=False) is False
    path.write_text("# fixed\n")
    assert watch.changed(throttle=False) is not False


def test_at_most_one_stat_a_second(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.toml"
    watch = ConfigWatch(str(path), None)
    clock = [1000.0]
    monkeypatch.setattr(config_watch.time, "monotonic", lambda: clock[0])
    assert watch.changed() is False  # checked (absent): the next second is quiet
    path.write_text("")
    clock[0] += 0.5
    assert watch.changed() is False  # throttled: no stat
    assert watch.changed(throttle=False) is not False  # a failing request looks now
    clock[0] += 1.0
    assert watch.changed() is not False
