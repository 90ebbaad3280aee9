"""A fake Kubernetes API server: just enough for ``kubectl get namespaces``.

Every request needs ``Authorization: Bearer <jwt>`` that the server's
:class:`~token_gate.TokenGate` accepts (as a real API server configured with
structured authentication against Entra would check it); anything else gets a
401 ``Status`` object, which is what makes client-go re-run an exec plugin.

kubectl discovers the API (``/api``, ``/apis``, ``/api/v1``), then lists
namespaces asking for a server-side ``Table``
(``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``); both the Table and
the plain ``NamespaceList`` (for ``-o name``/``-o json``) are served.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from https_server import GatedHTTPSServer, QuietHandler
from tls_certs import ServerTls
from token_gate import TokenGate, TokenRejected

NAMESPACES = ("default", "kube-public", "kube-system", "agentid-demo")
_CREATED = "2026-01-01T00:00:00Z"


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    status: int


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _namespace(name: str) -> dict[str, Any]:
    return {
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "uid": f"00000000-0000-4000-8000-{abs(hash(name)) % 10**12:012d}",
            "resourceVersion": "1",
            "creationTimestamp": _CREATED,
            "labels": {"kubernetes.io/metadata.name": name},
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def _namespace_list() -> dict[str, Any]:
    return {
        "kind": "NamespaceList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": "1"},
        "items": [_namespace(n) for n in NAMESPACES],
    }


def _namespace_table() -> dict[str, Any]:
    def column(name: str, fmt: str, description: str) -> dict[str, Any]:
        return {
            "name": name,
            "type": "string",
            "format": fmt,
            "description": description,
            "priority": 0,
        }

    rows = []
    for ns in _namespace_list()["items"]:
        meta = ns["metadata"]
        rows.append(
            {
                "cells": [meta["name"], "Active", "100d"],
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": meta,
                },
            }
        )
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": "1"},
        "columnDefinitions": [
            column("Name", "name", "Name must be unique within a namespace."),
            column("Status", "", "The status of the namespace"),
            column("Age", "", "CreationTimestamp of the object."),
        ],
        "rows": rows,
    }


class KubeApiHandler(QuietHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as client-go expects
    server: KubeApiServer

    def do_GET(self) -> None:
        path = urlsplit(self.path).path.rstrip("/") or "/"
        token = self._bearer()
        if token is None:
            return self._reply(401, _status(401, "Unauthorized", "Unauthorized"))
        try:
            self.server.gate.verify(token)
        except TokenRejected as exc:
            self.server.rejections.append(str(exc))
            return self._reply(401, _status(401, "Unauthorized", "Unauthorized"))

        body = self._route(path)
        if body is None:
            return self._reply(404, _status(404, "NotFound", f"the server could not find {path}"))
        self._reply(200, body)

    def _bearer(self) -> str | None:
        scheme, _, rest = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return rest.strip() or None

    def _route(self, path: str) -> dict[str, Any] | None:
        if path == "/version":
            return {
                "major": "1",
                "minor": "32",
                "gitVersion": "v1.32.0-agentid-fake",
                "platform": "linux/amd64",
            }
        if path == "/api":
            return {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.server.port}"}
                ],
            }
        if path == "/apis":
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}
        if path == "/api/v1":
            return {
                "kind": "APIResourceList",
                "groupVersion": "v1",
                "resources": [
                    {
                        "name": "namespaces",
                        "singularName": "namespace",
                        "namespaced": False,
                        "kind": "Namespace",
                        "shortNames": ["ns"],
                        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                    }
                ],
            }
        if path == "/api/v1/namespaces":
            if "as=Table" in self.headers.get("Accept", ""):
                return _namespace_table()
            return _namespace_list()
        prefix = "/api/v1/namespaces/"
        if path.startswith(prefix) and path[len(prefix) :] in NAMESPACES:
            return _namespace(path[len(prefix) :])
        return None

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.server.record(Seen(self.command, self.path, status))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.write(data)


class KubeApiServer(GatedHTTPSServer):
    """``with KubeApiServer(tls, gate) as api: api.url``"""

    def __init__(self, tls: ServerTls, gate: TokenGate) -> None:
        super().__init__(KubeApiHandler, tls, gate)
        self._log_lock = threading.Lock()
        self.requests: list[Seen] = []
        self.rejections: list[str] = []

    def record(self, seen: Seen) -> None:
        with self._log_lock:
            self.requests.append(seen)

    def statuses(self) -> list[int]:
        with self._log_lock:
            return [s.status for s in self.requests]
