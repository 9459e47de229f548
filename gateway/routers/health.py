"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.deps import EdgeDep, MetricsDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "broker not connected"}})
async def readyz(edge: EdgeDep) -> dict[str, str]:
    """Ready to accept frames: the broker is connected."""
    if not edge.broker.connected:
        raise HTTPException(503, "broker not connected", headers={"Retry-After": "2"})
    return {"status": "ready", "broker": edge.broker.name}


@router.get("/metrics", response_class=Response)
async def metrics(edge: EdgeDep, metrics: MetricsDep) -> Response:
    """Prometheus metrics: frames, motion frames, publish latency, rejects by reason."""
    metrics.broker_connected.set(1 if edge.broker.connected else 0)
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
