"""``kubeconfig-user --merge [FILE]``: an option whose value is optional, the
same in the parser, ``--help``, the man page and both completions."""

from __future__ import annotations

import io

import pytest

from agentid_client import docgen
from agentid_client.cliargs import parse
from agentid_client.commands import COMMANDS
from agentid_client.helptext import print_help


@pytest.mark.parametrize(
    ("argv", "merge", "name"),
    [
        (["--merge"], True, None),
        (["--merge", "kc.yaml"], "kc.yaml", None),
        (["--merge=kc.yaml"], "kc.yaml", None),
        (["--merge", "--name", "n"], True, "n"),
        (["--name", "n", "--merge"], True, "n"),
        ([], None, None),
    ],
)
def test_merge_takes_an_optional_file(argv: list[str], merge: object, name: object) -> None:
    parsed = parse(["kubeconfig-user", "--profile", "p", *argv], COMMANDS)
    assert parsed.opts.get("merge") == merge
    assert parsed.opts.get("name") == name


def test_help_man_and_completions_show_the_optional_file() -> None:
    out = io.StringIO()
    print_help("kubeconfig-user", out)
    assert "--merge [FILE]" in out.getvalue()
    assert "\\fB\\-\\-merge\\fR [\\fIFILE\\fR]" in docgen.render_man()
    assert "'--merge[" in docgen.render_zsh() and "]::file:_files'" in docgen.render_zsh()
    assert '"kubeconfig-user --merge") COMPREPLY=($(compgen -f' in docgen.render_bash()


def test_an_empty_merge_file_is_a_usage_error() -> None:
    from agentid_client.cli import CLI

    err = io.StringIO()
    code = CLI(stdout=io.StringIO(), stderr=err).run(
        ["kubeconfig-user", "--profile", "p", "--merge="]
    )
    assert code == 2
    assert "--merge= needs a file name" in err.getvalue()
