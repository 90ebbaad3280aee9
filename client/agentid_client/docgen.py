"""The man page and the bash/zsh completions, rendered from the command table.

``scripts/gen_docs.py`` writes them under ``share/`` (installed with the
wheel as ``share/man/man1/agentid-helper.1``,
``share/bash-completion/completions/agentid-helper`` and
``share/zsh/site-functions/_agentid-helper``); ``tests/docs/test_docgen.py`` fails
when the committed files differ from what this module renders, so a new
command or flag reaches them. The CLI imports it only for
``agentid-helper completion bash|zsh`` (the same text, for shells that never
look under a venv's ``share/``).

``--profile`` completes the config's profile names: the scripts call
``agentid-helper completion profiles``, which reads config.toml (no daemon).
"""

from __future__ import annotations

from . import __version__
from .cliargs import Command, Opt
from .commands import ABOUT, COMMANDS, ENVIRONMENT, EXAMPLES, EXIT_CODES, PROGRAM, SUMMARY

MAN_PATH = "share/man/man1/agentid-helper.1"
BASH_PATH = "share/bash-completion/completions/agentid-helper"
ZSH_PATH = "share/zsh/site-functions/_agentid-helper"
GENERATED = "generated from the command table by scripts/gen_docs.py; do not edit"

# Metavars that name a file: their values complete as paths.
_FILE_METAVARS = frozenset({"PATH", "FILE"})
# Options whose value is a profile of config.toml.
_PROFILE_FLAGS = frozenset({"--profile"})


def _takes_value(opt: Opt) -> bool:
    return opt.kind != "flag"


# ---- man page ---------------------------------------------------------------


def _roff(text: str) -> str:
    """Escape text for roff: backslashes, hyphens, and control characters at line starts."""
    out = text.replace("\\", "\\e").replace("-", "\\-")
    lines = [("\\&" + line) if line.startswith((".", "'")) else line for line in out.split("\n")]
    return "\n".join(lines)


def _synopsis(cmd: Command) -> str:
    parts = [f"\\fB{_roff(PROGRAM)} {_roff(cmd.name)}\\fR"]
    if cmd.opts:
        parts.append("[\\fIOPTIONS\\fR]")
    for pos in cmd.positionals:
        shown = "|".join(pos.choices) if pos.choices else pos.name.upper()
        parts.append(f"\\fI{_roff(shown)}\\fR")
    if cmd.rest == "command":
        parts.append("\\fB\\-\\-\\fR \\fICMD\\fR ...")
    elif cmd.rest == "passthrough":
        parts.append("[\\fIARGS\\fR ...]")
    return " ".join(parts)


def _option_head(opt: Opt) -> str:
    head = f"\\fB{_roff(opt.flag)}\\fR"
    if opt.short:
        head = f"\\fB{_roff(opt.short)}\\fR, " + head
    if _takes_value(opt):
        shown = "{" + ",".join(opt.choices) + "}" if opt.choices else opt.metavar
        head += f" \\fI{_roff(shown)}\\fR"
        if opt.kind == "optional":
            head = head.replace(" \\fI", " [\\fI", 1) + "]"
    return head


def render_man() -> str:
    out = [
        f'.\\" {GENERATED}',
        f'.TH AGENTID\\-HELPER 1 "" "{PROGRAM} {__version__}" "User Commands"',
        ".SH NAME",
        f"{_roff(PROGRAM)} \\- {_roff(SUMMARY)}",
        ".SH SYNOPSIS",
        f"\\fB{_roff(PROGRAM)}\\fR \\fICOMMAND\\fR [\\fIOPTIONS\\fR]",
        ".br",
        f"\\fB{_roff(PROGRAM)}\\fR [\\fICOMMAND\\fR] \\fB\\-\\-help\\fR",
        ".SH DESCRIPTION",
        _roff(ABOUT),
        ".SH COMMANDS",
    ]
    for cmd in COMMANDS.values():
        out += [f".SS {_roff(cmd.name)}", _synopsis(cmd), ".PP", _roff(cmd.summary) + "."]
        for pos in cmd.positionals:
            out += [".TP", f"\\fI{_roff(pos.name.upper())}\\fR", _roff(pos.help)]
        for opt in cmd.opts.values():
            out += [".TP", _option_head(opt), _roff(opt.help)]
        if cmd.epilog.strip():
            out += [".PP", "Examples:", ".PP", ".nf", ".RS 4"]
            out += [_roff(line.strip()) for line in cmd.epilog.splitlines()[1:] if line.strip()]
            out += [".RE", ".fi"]
    out += [".SH EXAMPLES", ".nf", ".RS 4"]
    out += [_roff(line.strip()) for line in EXAMPLES.splitlines() if line.strip()]
    out += [".RE", ".fi", ".SH ENVIRONMENT"]
    for name, text in ENVIRONMENT:
        out += [".TP", f"\\fB{_roff(name)}\\fR", _roff(text)]
    out += [".SH EXIT STATUS"]
    for code, meaning in EXIT_CODES:
        out += [".TP", f"\\fB{code}\\fR", _roff(meaning)]
    out += [
        ".SH FILES",
        ".TP",
        "\\fI~/.config/agentid\\-helper/config.toml\\fR",
        "the daemon's configuration (profiles, defaults, git hosts)",
        ".TP",
        "\\fI$XDG_RUNTIME_DIR/agentid\\-helper/agentid\\-helper.sock\\fR",
        "the daemon's socket (0600, in a 0700 directory)",
        ".SH SEE ALSO",
        "\\fBagentid\\-helperd\\fR(1) (\\fBagentid\\-helperd \\-\\-help\\fR), "
        "\\fBsystemctl\\fR(1), \\fBgitcredentials\\fR(7), \\fBkubectl\\fR(1);",
        "docs/design.md, docs/api.md, docs/configuration.md and docs/systemd.md "
        "in the agentid\\-helper sources.",
    ]
    return "\n".join(out) + "\n"


# ---- bash -------------------------------------------------------------------


def _bash_words(words: list[str]) -> str:
    return " ".join(words)


def render_bash() -> str:
    names = list(COMMANDS)
    lines = [
        f"# bash completion for {PROGRAM}: {GENERATED}",
        f'# load it with: eval "$({PROGRAM} completion bash)"',
        "_agentid_helper_profiles() {  # the config's profiles (reads config.toml, no daemon)",
        '    "${COMP_WORDS[0]/#\\~/$HOME}" completion profiles 2>/dev/null',
        "}",
        "_agentid_helper() {",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
        "    if [[ $COMP_CWORD -eq 1 ]]; then",
        f'        COMPREPLY=($(compgen -W "{_bash_words([*names, "--help", "--version"])}"'
        ' -- "$cur"))',
        "        return",
        "    fi",
        '    local cmd="${COMP_WORDS[1]}" i',
        '    if [[ $cmd == exec ]]; then  # after "--" comes the command to run',
        "        for ((i = 2; i < COMP_CWORD; i++)); do",
        "            if [[ ${COMP_WORDS[i]} == -- ]]; then",
        "                if [[ $i -eq $((COMP_CWORD - 1)) ]]; then",
        '                    COMPREPLY=($(compgen -c -- "$cur"))',
        "                else",
        '                    COMPREPLY=($(compgen -f -- "$cur"))',
        "                fi",
        "                return",
        "            fi",
        "        done",
        "    fi",
        "    # --flag=VALUE: bash splits the word at = (COMP_WORDBREAKS), leaving",
        '    # cur "=" right after it, or prev "=" once VALUE is begun.',
        "    local valued=",
        "    if [[ $cur == = ]]; then",
        '        cur="" valued=1',
        "    elif [[ $prev == = && $COMP_CWORD -ge 3 ]]; then",
        '        prev="${COMP_WORDS[COMP_CWORD-2]}" valued=1',
        "    fi",
        '    case "$cmd $prev" in',
    ]
    for cmd in COMMANDS.values():
        for opt in cmd.opts.values():
            if not _takes_value(opt):
                continue
            if opt.choices:
                action = f'COMPREPLY=($(compgen -W "{_bash_words(list(opt.choices))}" -- "$cur"))'
            elif opt.metavar in _FILE_METAVARS:
                action = 'COMPREPLY=($(compgen -f -- "$cur"))'
            elif opt.flag in _PROFILE_FLAGS:
                action = 'COMPREPLY=($(compgen -W "$(_agentid_helper_profiles)" -- "$cur"))'
            else:
                action = "COMPREPLY=()"
            lines.append(f'        "{cmd.name} {opt.flag}") {action}; return ;;')
    lines += [
        "    esac",
        "    if [[ -n $valued ]]; then  # a value of a flag offered nothing above",
        "        COMPREPLY=()",
        "        return",
        "    fi",
        "    local words",
        '    case "$cmd" in',
    ]
    for cmd in COMMANDS.values():
        words = [*cmd.opts, "--help"]
        for pos in cmd.positionals:
            words += list(pos.choices)
        if cmd.rest == "command":
            words.append("--")
        lines.append(f'        {cmd.name}) words="{_bash_words(words)}" ;;')
    lines += [
        "        *) words= ;;",
        "    esac",
        '    COMPREPLY=($(compgen -W "$words" -- "$cur"))',
        "}",
        f"complete -F _agentid_helper {PROGRAM}",
    ]
    return "\n".join(lines) + "\n"


# ---- zsh --------------------------------------------------------------------


def _zsh_quote(text: str) -> str:
    """A single-quoted zsh word."""
    return "'" + text.replace("'", "'\\''") + "'"


def _zsh_help(text: str) -> str:
    """Text inside an _arguments ``[...]`` description."""
    return text.replace("\\", "\\\\").replace("[", "(").replace("]", ")").replace(":", "\\:")


def _zsh_spec(opt: Opt) -> str:
    # "--flag=" takes the value in the next word or after "=" (``--profile=NAME``
    # is accepted, so it completes too); an optional value stays "--flag".
    joined = "=" if _takes_value(opt) and opt.kind != "optional" else ""
    spec = ("*" if opt.kind == "append" else "") + opt.flag + joined
    spec += f"[{_zsh_help(opt.help)}]"
    if _takes_value(opt):
        if opt.choices:
            action = "(" + " ".join(opt.choices) + ")"
        elif opt.metavar in _FILE_METAVARS:
            action = "_files"
        elif opt.flag in _PROFILE_FLAGS:
            action = "_agentid-helper_profiles"
        else:
            action = " "
        # "::" marks an optional argument (``--merge [FILE]``)
        colon = "::" if opt.kind == "optional" else ":"
        spec += f"{colon}{opt.metavar.lower()}:{action}"
    return _zsh_quote(spec)


def render_zsh() -> str:
    lines = [
        f"#compdef {PROGRAM}",
        f"# zsh completion for {PROGRAM}: {GENERATED}",
        f"# on $fpath, or loaded with: source <({PROGRAM} completion zsh)  (after compinit)",
        "",
        "_agentid-helper_profiles() {  # the config's profiles (reads config.toml, no daemon)",
        "    local -a profiles",
        '    profiles=(${(f)"$(_call_program profiles '
        f'{PROGRAM} completion profiles 2>/dev/null)"}})',
        "    _wanted profiles expl profile compadd -a profiles",
        "}",
        "",
        "_agentid-helper() {",
        "    local -a commands",
        "    commands=(",
    ]
    for cmd in COMMANDS.values():
        lines.append(f"        {_zsh_quote(cmd.name + ':' + _zsh_help(cmd.summary))}")
    lines += [
        "    )",
        "    if (( CURRENT == 2 )); then",
        "        _describe -t commands command commands",
        "        return",
        "    fi",
        "    local cmd=$words[2]",
        "    shift words",
        "    (( CURRENT-- ))",
        "    case $cmd in",
    ]
    for cmd in COMMANDS.values():
        specs = [_zsh_spec(opt) for opt in cmd.opts.values()]
        for n, pos in enumerate(cmd.positionals, start=1):
            action = "(" + " ".join(pos.choices) + ")" if pos.choices else " "
            specs.append(_zsh_quote(f"{n}:{pos.name}:{action}"))
        if cmd.rest == "command":
            specs.append(_zsh_quote("*::command:_normal"))
        elif cmd.rest == "passthrough":
            specs.append(_zsh_quote("*::arguments:_files"))
        body = " \\\n                ".join(["_arguments -s", *specs])
        lines.append(f"        {cmd.name})\n            {body}\n            ;;")
    lines += [
        "    esac",
        "}",
        "",
        "# autoloaded from $fpath: complete now; sourced: register with compdef",
        "if [[ $funcstack[1] == _agentid-helper ]]; then",
        '    _agentid-helper "$@"',
        "else",
        f"    compdef _agentid-helper {PROGRAM}",
        "fi",
    ]
    return "\n".join(lines) + "\n"


RENDERERS = {MAN_PATH: render_man, BASH_PATH: render_bash, ZSH_PATH: render_zsh}
