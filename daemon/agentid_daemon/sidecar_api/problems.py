"""RFC 7807 ProblemDetails, as ASP.NET Core's ``TypedResults.Problem`` writes them.

Microsoft's sidecar answers every error with ``application/problem+json``
(Endpoints/*.cs: ``TypedResults.Problem(detail, statusCode)``); ASP.NET fills
``type`` with the RFC 9110 section of the status and ``title`` with its
reason phrase. The detail never carries a token or a secret.
"""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus

from ..server.protocol import Response

# ASP.NET Core's ProblemDetailsDefaults.Defaults: status -> RFC 9110 section.
_TYPES = {
    400: "https://tools.ietf.org/html/rfc9110#section-15.5.1",
    401: "https://tools.ietf.org/html/rfc9110#section-15.5.2",
    403: "https://tools.ietf.org/html/rfc9110#section-15.5.4",
    404: "https://tools.ietf.org/html/rfc9110#section-15.5.5",
    405: "https://tools.ietf.org/html/rfc9110#section-15.5.6",
    413: "https://tools.ietf.org/html/rfc9110#section-15.5.14",
    500: "https://tools.ietf.org/html/rfc9110#section-15.6.1",
    502: "https://tools.ietf.org/html/rfc9110#section-15.6.3",
    503: "https://tools.ietf.org/html/rfc9110#section-15.6.4",
}

CONTENT_TYPE = "application/problem+json"


class Problem(Exception):
    """An error answer: ``raise Problem(400, "Not able to resolve 'X'.")``."""

    def __init__(self, status: int, detail: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = list(headers)


def problem_response(problem: Problem) -> Response:
    """The ``application/problem+json`` answer of *problem*."""
    try:
        title = HTTPStatus(problem.status).phrase
    except ValueError:
        title = "Error"
    body = {
        "type": _TYPES.get(problem.status, "about:blank"),
        "title": title,
        "status": problem.status,
        "detail": problem.detail,
    }
    response = Response.json(problem.status, body, problem.headers)
    response.headers[0] = ("content-type", CONTENT_TYPE)
    return response
