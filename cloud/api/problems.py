"""RFC 9457 problem details: every error the API returns is `application/problem+json`.

Raise `Problem(status, title, detail)` anywhere in a request; `install(app)` turns it, FastAPI's
validation errors, Starlette's 404/405 and any unexpected exception into a problem document.
An unexpected exception is logged with its traceback and answered with a 500 that says nothing
about the code (never a stack trace to the client).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)
MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://lienwatch.dev/problems/"  # documented in docs/api.md ("Errors")


class Problem(Exception):
    """An error answer: HTTP status, a short title, what went wrong and what to do."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        *,
        kind: str = "",
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.kind = kind or title.lower().replace(" ", "-")
        self.headers = headers or {}
        self.extra = extra or {}


class ProblemDocument(BaseModel):
    """The problem+json body (RFC 9457), as the OpenAPI spec documents it."""

    type: str
    title: str
    status: int
    detail: str = ""
    instance: str = ""


def problem_response(request: Request, problem: Problem) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + problem.kind,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": request.url.path,
        **problem.extra,
    }
    return JSONResponse(body, status_code=problem.status, media_type=MEDIA_TYPE, headers=problem.headers)


# Responses every route may give, for the OpenAPI spec.
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ProblemDocument, "description": text, "content": {MEDIA_TYPE: {}}}
    for code, text in (
        (401, "No or an unknown API key"),
        (403, "The key's role may not do this"),
        (422, "The request is invalid"),
        (429, "Too many requests for this key"),
    )
}

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _validation_detail(error: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors = []
    for item in error.errors()[:20]:
        where = ".".join(str(part) for part in item.get("loc", ()))
        errors.append({"field": where, "message": str(item.get("msg", ""))})
    text = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return text, errors


def install(app: FastAPI) -> None:
    """Register the problem+json handlers on `app`."""

    @app.exception_handler(Problem)
    async def on_problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        text, errors = _validation_detail(exc)
        return problem_response(
            request,
            Problem(422, "Unprocessable Content", text, kind="invalid-request", extra={"errors": errors}),
        )

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = _TITLES.get(exc.status_code, "Error")
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else ""
        if exc.status_code == 404 and not detail:
            detail = f"no resource at {request.url.path} (the API is described at /openapi.json)"
        if exc.status_code == 405 and not detail:
            detail = f"{request.method} is not allowed on {request.url.path}"
        return problem_response(
            request, Problem(exc.status_code, title, detail, headers=dict(exc.headers or {}))
        )

    @app.exception_handler(Exception)
    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error answering %s %s", request.method, request.url.path)
        return problem_response(
            request,
            Problem(
                500,
                "Internal Server Error",
                "the server failed to answer; the error is logged",
                kind="internal-error",
            ),
        )


NUL_DETAIL = "the request holds U+0000 (NUL), which no parameter or field accepts"


class RefuseNulMiddleware:
    """Answers 422 to a path or query string holding NUL (raw or `%00`), before any route runs.

    PostgreSQL text cannot hold NUL: psycopg refuses such a parameter with a DataError, which a
    route would otherwise answer as a 500. Checked here once for every parameter of every route;
    request bodies are checked by their models (`routes.devices.Strict`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query: bytes = scope.get("query_string", b"")
            in_query = b"%00" in query or b"\x00" in query
            if in_query or "\x00" in scope.get("path", ""):
                problem = Problem(422, "Unprocessable Content", NUL_DETAIL, kind="invalid-request",
                                  extra={"errors": [{"field": "query" if in_query else "path",
                                                     "message": NUL_DETAIL}]})
                await problem_response(Request(scope), problem)(scope, receive, send)
                return
        await self.app(scope, receive, send)
