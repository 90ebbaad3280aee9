"""Config changes take effect without a signal: the real client, an autostarted
daemon and the emulator.

Was: ``get`` before writing a config autostarted a daemon; after writing
config.toml, ``get`` kept failing ("missing tenant_id ...", exit 2) and
``doctor`` said "daemon configuration reload: ok" and then "unknown profile
'app'; known profiles: none configured". Only ``kill -HUP`` helped, and
nothing said so.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from client_stack import Env, client_stack, write_config
from daemon_procs import daemon_pids


@pytest.fixture
def bare(emulator: Any, tmp_path: Path) -> Iterator[Env]:
    """A client environment whose config.toml does not exist yet."""
    with client_stack(emulator, tmp_path) as env:
        env.config.unlink()
        yield env


def test_a_config_written_after_autostart_is_used_at_once(
    bare: Env, emulator: Any, tmp_path: Path
) -> None:
    before = bare.run("get")
    assert before.returncode == 2, before.stderr
    assert "missing tenant_id" in before.stderr
    (pid,) = daemon_pids(bare.sock)  # the first get autostarted the daemon

    write_config(emulator, tmp_path)  # profiles app (default), user, obo
    after = bare.run("get")  # at once: no signal, no waiting
    assert after.returncode == 0, after.stderr
    assert after.stdout.strip().count(".") == 2
    user = bare.run("get", "--profile", "user")
    assert user.returncode == 0, user.stderr
    assert daemon_pids(bare.sock) == [pid]  # the same daemon, not a restart

    status = json.loads(bare.run("status", "--json").stdout)["daemon"]
    assert status["profiles"] == ["app", "obo", "user"]
    assert status["last_reload_error"] is None
    assert status["config_file"]["size"] == bare.config.stat().st_size

    doctor = bare.run("doctor")
    assert "✔ daemon configuration reload: ok" in doctor.stdout, doctor.stdout
    assert "✔ profile app: token acquired" in doctor.stdout, doctor.stdout
    assert "unknown profile" not in doctor.stdout


def test_a_broken_edit_keeps_the_old_config_and_says_why(
    bare: Env, emulator: Any, tmp_path: Path
) -> None:
    write_config(emulator, tmp_path)
    assert bare.run("get").returncode == 0
    good = bare.config.read_text()
    bare.config.write_text(good + "\n[profiles.broken\n")  # invalid TOML

    still = bare.run("get")  # the previous configuration stays in force
    assert still.returncode == 0, still.stderr
    doctor = bare.run("doctor")
    assert doctor.returncode == 5, doctor.stdout
    assert "✘ daemon configuration reload:" in doctor.stdout
    assert "invalid TOML" in doctor.stdout
    assert "keeps serving its previous configuration" in doctor.stdout
    assert "reload: ok" not in doctor.stdout

    reload = bare.run("reload")
    assert reload.returncode == 5, reload.stderr
    assert "invalid TOML" in reload.stderr
    assert "keeps serving its previous configuration" in reload.stderr

    extra = '\n[profiles.extra]\nscope = "https://graph.microsoft.com/.default"\n'
    bare.config.write_text(good + extra)
    loaded = bare.run("reload")
    assert loaded.returncode == 0, loaded.stderr
    assert f"configuration reloaded from {bare.config} (profiles added extra)" in loaded.stdout
    again = bare.run("reload")
    assert again.returncode == 0, again.stderr
    assert f"configuration unchanged ({bare.config})" in again.stdout
    status = json.loads(bare.run("status", "--json").stdout)["daemon"]
    assert "extra" in status["profiles"]


def test_reload_without_a_daemon_has_nothing_to_do(bare: Env) -> None:
    done = bare.run("reload")
    assert done.returncode == 0, done.stderr
    assert "daemon not running: nothing to reload" in done.stderr
    assert daemon_pids(bare.sock) == []  # reload never starts one
