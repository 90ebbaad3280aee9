"""``--help`` output, rendered by argparse from the table in :mod:`commands`.

Imported only when help is asked for, so argparse never slows the hot path.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import TextIO

from .cliargs import Command
from .commands import ABOUT, COMMANDS, ENVIRONMENT, EXAMPLES, EXIT_CODES, SUMMARY


def _description() -> str:
    codes = ", ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES)
    text = f"{SUMMARY[0].upper()}{SUMMARY[1:]}. {ABOUT}"
    return textwrap.fill(text, 76) + "\n\n" + textwrap.fill(f"exit codes: {codes}", 76) + "\n"


def _epilog() -> str:
    width = max(len(name) for name, _ in ENVIRONMENT) + 2
    env = "".join(f"  {name:<{width}} {text}\n" for name, text in ENVIRONMENT)
    return f"examples:\n{EXAMPLES}\nenvironment:\n{env}"


DESCRIPTION = _description()
EPILOG = _epilog()


def _command_parser(
    cmd: Command, sub: argparse._SubParsersAction[argparse.ArgumentParser] | None = None
) -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    if sub is not None:
        parser = sub.add_parser(
            cmd.name,
            help=cmd.summary,
            description=cmd.summary,
            epilog=cmd.epilog,
            formatter_class=raw,
        )
    else:
        parser = argparse.ArgumentParser(
            prog=f"agentid-helper {cmd.name}",
            description=cmd.summary,
            epilog=cmd.epilog,
            formatter_class=raw,
        )
    for pos in cmd.positionals:
        parser.add_argument(pos.name, help=pos.help, choices=pos.choices or None)
    for opt in cmd.opts.values():
        flags = (opt.short, opt.flag) if opt.short else (opt.flag,)
        if opt.kind == "flag":
            parser.add_argument(*flags, action="store_true", help=opt.help)
        elif opt.kind == "optional":
            parser.add_argument(*flags, nargs="?", const=True, metavar=opt.metavar, help=opt.help)
        else:
            parser.add_argument(
                *flags,
                metavar=None if opt.choices else opt.metavar,
                choices=opt.choices or None,
                help=opt.help,
                action="append" if opt.kind == "append" else "store",
            )
    if cmd.rest == "command":
        parser.add_argument(
            "cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...", help="the command to run"
        )
    elif cmd.rest == "passthrough":
        parser.add_argument(
            "args", nargs=argparse.REMAINDER, metavar="ARGS", help="arguments for agentid-helperd"
        )
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentid-helper",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in COMMANDS.values():
        _command_parser(cmd, sub)
    return parser


def print_help(command: str | None, stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    if command is None:
        out.write(build_parser().format_help())
    else:
        out.write(_command_parser(COMMANDS[command]).format_help())
