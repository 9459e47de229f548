"""Dependency aliases shared by the routers.

They are ``async`` on purpose: FastAPI runs a plain ``def`` dependency in its thread pool,
a thread hand-off per request for what is an attribute read.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gateway.edge import Edge
from gateway.metrics import GatewayMetrics


async def _edge(request: Request) -> Edge:
    edge: Edge = request.app.state.edge
    return edge


async def _metrics(request: Request) -> GatewayMetrics:
    metrics: GatewayMetrics = request.app.state.metrics
    return metrics


EdgeDep = Annotated[Edge, Depends(_edge)]
MetricsDep = Annotated[GatewayMetrics, Depends(_metrics)]
