"""git credential helper protocol (gitcredentials(7), git-credential(1)).

git writes ``key=value`` lines and a blank line; ``get`` answers with
``username``/``password`` (every git) or, when git announced
``capability[]=authtype`` (git >= 2.46), with ``authtype=Bearer`` and
``credential``. Hosts without a profile get no answer (exit 0), so that the
next configured helper can answer. Errors go to stderr; nothing prompts.

Host -> profile comes from ``[git."HOST"]`` tables in config.toml, where HOST
may carry a port and a path prefix (``[git."dev.azure.com/org"]``); the
longest matching prefix wins.
"""

from __future__ import annotations

from .contract import git_key, git_profile
from .failures import EXIT_CONFIG, EXIT_USAGE, ClientError

TYPE_CHECKING = False  # typing costs ~10 ms of imports on the hot path
if TYPE_CHECKING:
    from typing import Any, TextIO

DEFAULT_USERNAME = "agentid"
MAX_INPUT_BYTES = 1024 * 1024
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def parse_request(stream: TextIO) -> dict[str, Any]:
    """Read git's attributes until a blank line or EOF. ``key[]`` values collect in lists."""
    attrs: dict[str, Any] = {}
    total = 0
    for raw in stream:
        total += len(raw)
        if total > MAX_INPUT_BYTES:
            raise ClientError("git-credential: input too large", EXIT_USAGE)
        line = raw.rstrip("\n").rstrip("\r")
        if not line:
            break
        key, sep, value = line.partition("=")
        if not sep:
            continue  # git never sends these; ignore rather than fail the helper chain
        if key.endswith("[]"):
            name = key[:-2]
            if value == "":
                attrs[name] = []  # an empty value resets the list (git-credential(1))
            else:
                current = attrs.get(name)
                if not isinstance(current, list):
                    # "key=v" then "key[]=w": the list form wins, as in git.
                    current = attrs[name] = []
                current.append(value)
        else:
            attrs[key] = value
    if "url" in attrs and "host" not in attrs:
        attrs.update(_split_url(str(attrs["url"])))
    return attrs


def _split_url(url: str) -> dict[str, str]:
    protocol, sep, rest = url.partition("://")
    if not sep:
        return {}
    hostpart, _, path = rest.partition("/")
    host = hostpart.rpartition("@")[2]
    out = {"protocol": protocol, "host": host}
    if path:
        out["path"] = path
    return out


def load_git_map(config_file: str | None = None) -> dict[str, str]:
    """``{"host[/path]": profile}`` from config.toml; {} when the file is absent."""
    from . import paths  # here: the hot path (hotpath.py) imports this module, not os

    path = config_file or paths.config_path()
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ClientError(f"cannot read config {path}: {exc.strerror}", EXIT_CONFIG) from None
    import tomllib  # only this command reads the config itself

    try:
        config = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ClientError(f"config {path} does not parse: {exc}", EXIT_CONFIG) from None
    table = config.get("git", {})
    if not isinstance(table, dict):
        raise ClientError(f"config {path}: [git] must be a table of hosts", EXIT_CONFIG)
    mapping: dict[str, str] = {}
    for host, entry in table.items():
        profile = entry.get("profile") if isinstance(entry, dict) else None
        if not isinstance(profile, str) or not profile:
            raise ClientError(f'config {path}: [git."{host}"] needs profile = "..."', EXIT_CONFIG)
        mapping[git_key(host)] = profile
    return mapping


def profile_for(attrs: dict[str, Any], mapping: dict[str, str]) -> str | None:
    """The profile for git's host/path (see :func:`contract.git_profile`)."""
    host, path = str(attrs.get("host", "")), str(attrs.get("path", ""))
    return git_profile(mapping, host, path, str(attrs.get("protocol") or "https"))


def protocol_allowed(attrs: dict[str, Any]) -> bool:
    """Bearer tokens go over https only (plain http only to a loopback host)."""
    protocol = str(attrs.get("protocol", "")).lower()
    if protocol == "https":
        return True
    host = str(attrs.get("host", "")).lower()
    hostname = host.split("]")[0] + "]" if host.startswith("[") else host.rsplit(":", 1)[0]
    return protocol == "http" and hostname in LOOPBACK_HOSTS


def answer_get(attrs: dict[str, Any], profile: str, body: dict[str, Any]) -> str:
    """git's answer lines for ``get``."""
    token = str(body["access_token"])
    lines: list[str] = []
    expires_on = body.get("expires_on")
    expiry = (
        f"password_expiry_utc={int(expires_on)}" if isinstance(expires_on, (int, float)) else None
    )
    if "authtype" in (attrs.get("capability") or []):
        lines += ["capability[]=authtype", "authtype=Bearer", f"credential={token}", "ephemeral=1"]
    else:
        # keep a username git already has (from the URL): answering another would replace it
        username = attrs.get("username") or profile or DEFAULT_USERNAME
        lines += [f"username={username}", f"password={token}"]
    if expiry:
        lines.append(expiry)
    return "\n".join(lines) + "\n"


def selected_profile(attrs: dict[str, Any], explicit: str | None) -> str | None:
    if explicit:
        return explicit
    return profile_for(attrs, load_git_map())
