"""``agentid-helper-emulator``: run the local Entra emulator.

agentid-helper-emulator [--port N] [--demo | --seed FILE] [--ready-file F]
                        [--state-dir D] [--token-lifetime-s N] [--refresh-in-s N]
                        [--imds-port N] [--replication-delay-s N] [--print-config]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from cryptography import x509

from .certs import cert_pem, ensure_key_material, key_pem, new_key, self_signed_certificate
from .demo_config import render_demo_config, write_secret_file
from .directory import Directory, SeedError, demo_directory
from .emulator_state import EmulatorState
from .imds import ImdsHTTPServer, ImdsService, serve_in_thread
from .jwt_tokens import TokenIssuer
from .legs import TokenService
from .seed_file import load_seed
from .server import GRAPH_PREFIX, EmulatorHTTPServer
from .workload import workload_issuer, write_workload_token

PROG = "agentid-helper-emulator"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError("must be between 0 and 3600 seconds")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be between 0 and 65535")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Local Microsoft Entra emulator for agent identities "
        "(offline authority over HTTPS on 127.0.0.1).",
    )
    parser.add_argument(
        "--port", type=_port, default=0, help="TCP port on 127.0.0.1 (default 0: any free port)"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--demo", action="store_true", help="built-in directory with fixed GUIDs (the default)"
    )
    source.add_argument("--seed", type=Path, metavar="FILE", help="TOML directory to load")
    parser.add_argument(
        "--ready-file",
        type=Path,
        metavar="F",
        help="write connection details here (JSON, atomically) once serving",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        metavar="D",
        help="CA, keys and certificates (default: the user state dir)",
    )
    parser.add_argument(
        "--token-lifetime-s",
        type=_positive_int,
        default=3600,
        metavar="N",
        help="lifetime of issued tokens in seconds (default 3600)",
    )
    parser.add_argument(
        "--refresh-in-s",
        type=_positive_int,
        metavar="N",
        help="always send refresh_in=N (default: lifetime/2 when >= 2h)",
    )
    parser.add_argument(
        "--imds-port",
        type=_port,
        metavar="N",
        help="also serve an Azure IMDS-shaped managed identity endpoint "
        "(plain HTTP on 127.0.0.1; 0: any free port); set "
        "AZURE_POD_IDENTITY_AUTHORITY_HOST to the ready file's "
        "imds_endpoint",
    )
    parser.add_argument(
        "--replication-delay-s",
        type=_non_negative_seconds,
        default=0.0,
        metavar="N",
        help="seconds before an object created through the emulator's Graph is known "
        "to the token endpoint (default 0; Entra is eventually consistent)",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="once serving, print an agentid-helper config.toml for the demo directory "
        "to stdout (its blueprint secret in STATE_DIR/blueprint.secret, 0600; no "
        "keyring needed), then keep serving",
    )
    return parser


def _default_state_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_state_dir("agentid-helper-emulator"))


def demo_certificate(state_dir: Path) -> tuple[x509.Certificate, Path]:
    """The demo blueprint's certificate credential: key + certificate in one PEM (0600)."""
    path = state_dir / "blueprint-cert.pem"
    with contextlib.suppress(OSError, ValueError):
        return x509.load_pem_x509_certificate(path.read_bytes()), path
    key = new_key()
    cert = self_signed_certificate(key, "agentid-helper demo blueprint")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_pem(key) + cert_pem(cert))
    return cert, path


def write_ready_file(path: Path, data: dict[str, Any]) -> None:
    """Write the ready file atomically, readable by its owner only (0600): it
    holds the demo blueprint's secret."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # a leftover of a crashed run with our pid
    # O_EXCL | O_NOFOLLOW: never write through a file or link someone else put there.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.print_config and args.seed is not None:
        parser.error("--print-config is for the demo directory, not --seed")
    state_dir: Path = (args.state_dir or _default_state_dir()).expanduser().resolve()
    extra: dict[str, Any] = {}
    directory: Directory
    if args.seed is not None:  # before any key generation: a bad seed fails fast
        try:
            directory = load_seed(args.seed)
        except SeedError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 2
    try:
        keys = ensure_key_material(state_dir)
    except OSError as exc:
        print(f"{PROG}: cannot prepare state dir {state_dir}: {exc}", file=sys.stderr)
        return 5
    if args.seed is None:
        cert, cert_path = demo_certificate(state_dir)
        directory = demo_directory(blueprint_certificate=cert)
        extra["blueprint_certificate_file"] = str(cert_path)
        try:
            secret = str(directory.summary["blueprint_secret"])
            extra["blueprint_secret_file"] = str(write_secret_file(state_dir, secret))
        except OSError as exc:
            print(f"{PROG}: cannot write the secret file in {state_dir}: {exc}", file=sys.stderr)
            return 5

    issuer = TokenIssuer("https://127.0.0.1:0", keys.signing_key)
    service = TokenService(directory, issuer, args.token_lifetime_s, args.refresh_in_s)
    service.replication.delay_s = args.replication_delay_s
    state = EmulatorState(service)
    try:
        server = EmulatorHTTPServer(args.port, state, keys.server_cert_path, keys.server_key_path)
    except OSError as exc:
        print(f"{PROG}: cannot listen on 127.0.0.1:{args.port}: {exc}", file=sys.stderr)
        return 1
    issuer.authority_host = f"https://127.0.0.1:{server.port}"
    imds: ImdsHTTPServer | None = None
    if args.imds_port is not None:
        try:
            imds = ImdsHTTPServer(args.imds_port, state, ImdsService(service))
        except OSError as exc:
            server.server_close()
            print(f"{PROG}: cannot listen on 127.0.0.1:{args.imds_port}: {exc}", file=sys.stderr)
            return 1
        extra["imds_endpoint"] = imds.endpoint

    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.2},
        name="emulator-http",
        daemon=True,
    )
    thread.start()
    threads = [thread] + ([serve_in_thread(imds)] if imds else [])

    tenant_id = directory.summary.get("tenant_id")
    if args.seed is None:
        token_file = state_dir / "workload-token.jwt"
        write_workload_token(service, token_file)
        extra["blueprint_federated_token_file"] = str(token_file)
    info = {
        "authority_host": issuer.authority_host,
        "authority": f"{issuer.authority_host}/{tenant_id}",
        "token_endpoint": f"{issuer.authority_host}/{tenant_id}/oauth2/v2.0/token",
        "ca_bundle": str(keys.ca_cert_path),
        "port": server.port,
        "pid": os.getpid(),
        "state_dir": str(state_dir),
        "workload_issuer": workload_issuer(issuer.authority_host),
        # Microsoft Graph: a client calls {graph_endpoint}/beta/...
        "graph_endpoint": f"{issuer.authority_host}{GRAPH_PREFIX}",
        "replication_delay_s": args.replication_delay_s,
        "token_lifetime_s": args.token_lifetime_s,
        **directory.summary,
        **extra,
    }
    if args.ready_file:
        write_ready_file(args.ready_file, info)
    if args.print_config:
        sys.stdout.write(render_demo_config(info))
        sys.stdout.flush()
    source = f"seed {args.seed}" if args.seed else "demo directory"
    print(
        f"{PROG}: serving {issuer.authority_host} (tenant {tenant_id}, {source}, "
        f"CA {keys.ca_cert_path})"
        + (f"; managed identity endpoint {imds.endpoint}" if imds else ""),
        file=sys.stderr,
        flush=True,
    )
    try:
        while not stop.wait(1.0):
            if not all(t.is_alive() for t in threads):
                return 1
    finally:
        for srv in (server, imds):
            if srv is not None:
                srv.shutdown()
                srv.server_close()
        if args.ready_file:
            with contextlib.suppress(OSError):
                args.ready_file.unlink()
        print(f"{PROG}: stopped", file=sys.stderr, flush=True)
    return 0
