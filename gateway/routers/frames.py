"""Camera ingest: ``POST /v1/cameras/{camera_id}/frames``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Path, Request, status
from pydantic import BaseModel

from gateway.deps import EdgeDep, MetricsDep, SettingsDep
from gateway.edge import BrokerDown, Unauthorized, UnknownCamera
from tripwire.contract import CONTENT_TYPES
from tripwire.errors import FrameError

router = APIRouter(prefix="/v1/cameras", tags=["frames"])

_MAGIC = {"image/jpeg": b"\xff\xd8\xff", "image/png": b"\x89PNG\r\n\x1a\n"}


class FrameAccepted(BaseModel):
    motion: bool
    score: float
    event_id: str | None
    published: bool
    seq: int


class Problem(BaseModel):
    detail: str


def _reject(
    metrics: MetricsDep, code: int, reason: str, detail: str, headers: dict[str, str] | None = None
) -> HTTPException:
    metrics.rejects.labels(reason).inc()
    return HTTPException(code, detail, headers=headers)


async def _read_body(request: Request, limit: int, metrics: MetricsDep) -> bytes:
    """Read at most ``limit`` bytes; refuse before reading when Content-Length says more."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise _reject(metrics, 400, "bad_length", "Content-Length is not a number")
        if int(declared) > limit:
            raise _reject(metrics, 413, "too_large", f"frame is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _reject(metrics, 413, "too_large", f"frame is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/{camera_id}/frames",
    status_code=status.HTTP_202_ACCEPTED,
    responses={code: {"model": Problem} for code in (400, 401, 404, 413, 415, 422, 503)},
)
async def post_frame(
    request: Request,
    camera_id: Annotated[str, Path(max_length=63)],
    edge: EdgeDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    authorization: Annotated[str | None, Header()] = None,
    content_type: Annotated[str | None, Header()] = None,
    x_capture_ns: Annotated[int | None, Header(ge=0, description="capture time, ns")] = None,
    x_seq: Annotated[int | None, Header(ge=0, description="camera frame sequence")] = None,
) -> FrameAccepted:
    """Accept one JPEG or PNG frame; run motion; publish it when it shows motion."""
    token = None
    if authorization and authorization[:7].lower() == "bearer ":
        token = authorization[7:].strip()
    try:
        camera = edge.authenticate(camera_id, token)
    except UnknownCamera as exc:
        raise _reject(metrics, 404, "unknown_camera", str(exc)) from None
    except Unauthorized as exc:
        raise _reject(
            metrics, 401, "unauthorized", str(exc), {"WWW-Authenticate": "Bearer"}
        ) from None
    media = (content_type or "").split(";")[0].strip().lower()
    if media not in CONTENT_TYPES:
        raise _reject(
            metrics,
            415,
            "media_type",
            f"Content-Type must be image/jpeg or image/png, not {media or 'missing'}",
        )
    body = await _read_body(request, settings.max_frame_bytes, metrics)
    if not body.startswith(_MAGIC[media]):
        raise _reject(
            metrics,
            422,
            "not_decodable",
            f"camera {camera_id}: body is not a {media.split('/')[1].upper()}",
        )
    try:
        done = await edge.ingest(camera, body, media, x_capture_ns, x_seq)
    except FrameError as exc:
        raise _reject(metrics, 422, "not_decodable", f"camera {camera_id}: {exc}") from None
    except BrokerDown as exc:
        raise _reject(
            metrics, 503, "broker_down", str(exc), {"Retry-After": str(settings.retry_after_s)}
        ) from None
    r = done.result
    return FrameAccepted(
        motion=r.motion,
        score=round(r.score, 4),
        event_id=r.event_id,
        published=done.published,
        seq=done.seq,
    )
