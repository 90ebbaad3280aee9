"""Command-line grammar (Opt, Pos, Command) and a tiny parser over a command table.

argparse costs ~10 ms of imports on every call; the hot commands (get,
kubectl-credential, git-credential, exec) run on every kubectl/git/script
invocation, so they are parsed by :func:`parse` from the table in
:mod:`agentid_client.commands`. The same table builds an argparse parser,
only for ``--help`` (:mod:`agentid_client.helptext`), so help and parsing
cannot drift apart.

Options accept ``--opt value`` and ``--opt=value``, and a short alias where
the table gives one (``Opt(short="-f")``: ``-f``, ``-n 20``); ``--`` ends options.
An option of kind ``optional`` (``--merge [FILE]``) takes ``--opt=value``, or
the next argument when it is not an option, and is ``True`` alone.
"""

from __future__ import annotations

from .failures import UsageError
from .redact import quoted


class Opt:
    __slots__ = ("choices", "dest", "flag", "help", "kind", "metavar", "short")

    def __init__(
        self,
        flag: str,
        help: str,
        *,
        kind: str = "value",
        choices: tuple[str, ...] = (),
        metavar: str = "",
        short: str = "",
    ):
        self.flag = flag
        self.short = short  # e.g. "-f" for --follow; "" for none
        self.dest = flag[2:].replace("-", "_")
        self.kind = kind  # "value" | "append" | "flag" | "optional" (a value or none)
        self.choices = choices
        self.metavar = metavar or self.dest.upper()
        self.help = help


class Pos:
    __slots__ = ("choices", "help", "name")

    def __init__(self, name: str, help: str, choices: tuple[str, ...] = ()):
        self.name = name
        self.help = help
        self.choices = choices


class Command:
    __slots__ = ("epilog", "name", "opts", "positionals", "rest", "shorts", "summary")

    def __init__(
        self,
        name: str,
        summary: str,
        opts: list[Opt],
        *,
        positionals: tuple[Pos, ...] = (),
        rest: str = "",
        epilog: str = "",
    ):
        self.name = name
        self.summary = summary
        self.opts = {o.flag: o for o in opts}
        self.shorts = {o.short: o for o in opts if o.short}
        self.positionals = positionals
        self.rest = rest  # "", "command" (exec: CMD ...) or "passthrough" (daemon)
        self.epilog = epilog


class HelpRequested(Exception):
    def __init__(self, command: str | None):
        super().__init__(command or "")
        self.command = command


class Parsed:
    __slots__ = ("command", "opts", "positionals", "rest")

    def __init__(
        self, command: str, opts: dict[str, object], positionals: list[str], rest: list[str]
    ):
        self.command = command
        self.opts = opts
        self.positionals = positionals
        self.rest = rest


def parse(argv: list[str], commands: dict[str, Command]) -> Parsed:
    """Parse ``argv`` (without the program name). Raises UsageError / HelpRequested."""
    if not argv or argv[0] in ("-h", "--help", "help"):
        if len(argv) > 1 and argv[0] == "help" and argv[1] in commands:
            raise HelpRequested(argv[1])
        raise HelpRequested(None)
    name = argv[0]
    cmd = commands.get(name)
    if cmd is None:
        raise UsageError(f"unknown command {quoted(name)} (choose from {', '.join(commands)})")
    opts: dict[str, object] = {}
    positionals: list[str] = []
    args = argv[1:]
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if cmd.rest == "passthrough":
            if arg in ("-h", "--help") and not positionals:
                raise HelpRequested(name)
            positionals.append(arg)
            continue
        if arg == "--":
            return _finish(cmd, opts, positionals, args[i:])
        if arg in ("-h", "--help"):
            raise HelpRequested(name)
        if arg in cmd.shorts:
            arg = cmd.shorts[arg].flag  # -f is --follow; a value follows as a separate arg
        if arg.startswith("--"):
            flag, eq, value = arg.partition("=")
            opt = cmd.opts.get(flag)
            if opt is None:
                raise UsageError(f"{name}: unknown option {flag}", name)
            if opt.kind == "flag":
                if eq:
                    raise UsageError(f"{name}: {flag} takes no value", name)
                opts[opt.dest] = True
                continue
            if opt.kind == "optional" and not eq:
                if i < len(args) and not args[i].startswith("-"):
                    opts[opt.dest] = args[i]
                    i += 1
                else:
                    opts[opt.dest] = True
                continue
            if not eq:
                if i >= len(args):
                    raise UsageError(f"{name}: {flag} needs a value", name)
                value = args[i]
                i += 1
            if opt.choices and value not in opt.choices:
                raise UsageError(
                    f"{name}: {flag} must be one of {', '.join(opt.choices)} (got {quoted(value)})",
                    name,
                )
            if opt.kind == "append":
                existing = opts.setdefault(opt.dest, [])
                assert isinstance(existing, list)
                existing.append(value)
            else:
                opts[opt.dest] = value
            continue
        if arg.startswith("-") and arg != "-":
            raise UsageError(f"{name}: unknown option {arg}", name)
        if cmd.rest == "command":
            return _finish(cmd, opts, positionals, args[i - 1 :])
        positionals.append(arg)
    return _finish(cmd, opts, positionals, [])


def _finish(
    cmd: Command, opts: dict[str, object], positionals: list[str], rest: list[str]
) -> Parsed:
    if cmd.rest == "passthrough":
        return Parsed(cmd.name, opts, [], positionals)
    if cmd.rest == "command":
        if positionals:
            raise UsageError(f"{cmd.name}: unexpected argument {quoted(positionals[0])}", cmd.name)
        return Parsed(cmd.name, opts, [], rest)
    if rest:
        positionals = positionals + rest
    if len(positionals) > len(cmd.positionals):
        raise UsageError(
            f"{cmd.name}: unexpected argument {quoted(positionals[len(cmd.positionals)])}", cmd.name
        )
    for pos, value in zip(cmd.positionals, positionals, strict=False):
        if pos.choices and value not in pos.choices:
            raise UsageError(
                f"{cmd.name}: {pos.name} must be one of {', '.join(pos.choices)} "
                f"(got {quoted(value)})",
                cmd.name,
            )
    return Parsed(cmd.name, opts, positionals, [])
