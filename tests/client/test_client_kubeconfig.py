"""kubeconfig users: entry."""

from __future__ import annotations

import json
import sys

import pytest

from agentid_client import kubeconfig


def test_users_entry_shape_and_quoting() -> None:
    out = kubeconfig.users_entry('we"ird', "p: x", "/opt/bin/agentid-helper")
    assert out == (
        "users:\n"
        '- name: "we\\"ird"\n'
        "  user:\n"
        "    exec:\n"
        '      apiVersion: "client.authentication.k8s.io/v1"\n'
        '      command: "/opt/bin/agentid-helper"\n'
        "      args:\n"
        '      - "kubectl-credential"\n'
        '      - "--profile"\n'
        '      - "p: x"\n'
        "      interactiveMode: Never\n"
        "      provideClusterInfo: false\n"
    )
    assert json.loads(out.splitlines()[1].split(": ", 1)[1]) == 'we"ird'


def test_helper_command_is_absolute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["python"])
    path = kubeconfig.helper_command()
    assert path.startswith("/")
    assert path.endswith("/agentid-helper")
