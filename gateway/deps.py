"""Dependency aliases shared by the routers.

They are ``async`` on purpose: FastAPI runs a plain ``def`` dependency in its thread pool,
which would cost three thread hand-offs per frame on the ingest hot path.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gateway.edge import Edge
from gateway.metrics import GatewayMetrics
from tripwire.settings import GatewaySettings


async def _edge(request: Request) -> Edge:
    edge: Edge = request.app.state.edge
    return edge


async def _settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


async def _metrics(request: Request) -> GatewayMetrics:
    metrics: GatewayMetrics = request.app.state.metrics
    return metrics


EdgeDep = Annotated[Edge, Depends(_edge)]
SettingsDep = Annotated[GatewaySettings, Depends(_settings)]
MetricsDep = Annotated[GatewayMetrics, Depends(_metrics)]
