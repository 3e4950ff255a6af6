"""Liveness, readiness (database reachable, schema current) and Prometheus metrics; no key needed."""

from __future__ import annotations

import psycopg
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from psycopg_pool import PoolTimeout
from pydantic import BaseModel

from cloud.api.context import api_state
from cloud.api.problems import MEDIA_TYPE, Problem, ProblemDocument
from cloud.store.errors import SchemaError
from cloud.store.migrate import check_schema, current_version

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    schema_version: int
    storage: str


@router.get("/healthz", response_model=Health, summary="The process is up")
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Ready,
    summary="The database is reachable and its schema current",
    responses={503: {"model": ProblemDocument, "content": {MEDIA_TYPE: {}}}},
)
def readyz(request: Request) -> Ready:
    pool = api_state(request).pool
    if pool is None:
        raise Problem(503, "Service Unavailable", "the database pool is not open", kind="not-ready")
    try:
        with pool.connection(timeout=3.0) as conn:
            storage = check_schema(conn)
            version = current_version(conn)
    except SchemaError as error:
        raise Problem(503, "Service Unavailable", str(error), kind="not-ready") from None
    except (PoolTimeout, psycopg.Error) as error:
        raise Problem(
            503,
            "Service Unavailable",
            f"the database is unreachable: {type(error).__name__}",
            kind="not-ready",
        ) from None
    return Ready(status="ready", schema_version=version, storage=storage)


@router.get(
    "/metrics",
    summary="Prometheus metrics of this API instance",
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
def metrics(request: Request) -> Response:
    return Response(api_state(request).metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
