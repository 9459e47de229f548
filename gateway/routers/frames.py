"""Camera ingest: ``POST /v1/cameras/{camera_id}/frames``."""

from __future__ import annotations

import asyncio
import json
import logging

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from functions.motion.probe import probe
from gateway.edge import BrokerDown, Edge, Unauthorized, UnknownCamera
from gateway.metrics import GatewayMetrics
from gateway.multipart import MAGIC as _MAGIC
from gateway.multipart import image_part
from tripwire.contract import CONTENT_TYPES
from tripwire.errors import FrameError, PayloadTooLarge
from tripwire.settings import GatewaySettings
from tripwire.tokens import hash_token, new_token, verify

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/cameras", tags=["frames"])

# Sequence and capture time travel as int64 in places (JetStream message ids, AMQP).
_MAX_INT = 2**63 - 1
# One encoder for every answer: json.dumps with arguments builds a new one per call.
_JSON = json.JSONEncoder(separators=(",", ":"))
_MULTIPART = "multipart/form-data"
# An unknown camera and a wrong token get the same answer (status, body, headers), so the
# answers cannot be used to list camera ids; an unknown camera's token is still hashed
# (against a hash nobody has the token of) so the two take the same time too.
_NOT_ACCEPTED = "camera id or token not accepted"
_NOBODY = hash_token(new_token())


class FrameAccepted(BaseModel):
    motion: bool
    score: float
    event_id: str | None
    published: bool
    seq: int


class Problem(BaseModel):
    detail: str


def _reject(
    metrics: GatewayMetrics,
    code: int,
    reason: str,
    detail: str,
    headers: dict[str, str] | None = None,
) -> HTTPException:
    metrics.rejects.labels(reason).inc()
    return HTTPException(code, detail, headers=headers)


async def _read_body(
    request: Request, camera: str, settings: GatewaySettings, metrics: GatewayMetrics
) -> bytes:
    """Read at most ``max_frame_bytes`` within ``body_timeout_s``; refuse before reading
    when Content-Length says more."""
    limit = settings.max_frame_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise _reject(metrics, 400, "bad_length", "Content-Length is not a number")
        if int(declared) > limit:
            raise _reject(metrics, 413, "too_large", f"frame is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        # A camera that stops sending half-way must not hold a connection (and its
        # buffered chunks) for ever.
        async with asyncio.timeout(settings.body_timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _reject(metrics, 413, "too_large", f"frame is over {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise _reject(
            metrics,
            408,
            "body_timeout",
            f"camera {camera}: frame not received within {settings.body_timeout_s:g} s",
            {"Connection": "close"},
        ) from None
    except ClientDisconnect:
        # A camera that drops the connection mid-upload (power, Wi-Fi): one line, counted;
        # the answer below goes nowhere.
        log.warning("camera %s: connection dropped after %d bytes of the frame", camera, size)
        raise _reject(metrics, 400, "disconnected", "connection dropped") from None
    return b"".join(chunks)


def _check_pixels(body: bytes, camera: str, limit: int, metrics: GatewayMetrics) -> None:
    """Refuse a frame with more than ``limit`` pixels from its header, before any decoding
    (a 261 KB PNG can hold 16384 x 16384 pixels: 600 MiB once decoded)."""
    try:
        info = probe(body)
    except FrameError as exc:
        raise _reject(metrics, 422, "not_decodable", f"camera {camera}: {exc}") from None
    pixels = info.width * info.height
    if pixels > limit:
        raise _reject(
            metrics,
            413,
            "too_many_pixels",
            f"camera {camera}: frame is {info.width}x{info.height} = {pixels} pixels, "
            f"over the limit of {limit}",
        )


# The ingest route takes only the Request and reads its few headers itself. Each FastAPI
# dependency and Header() parameter costs a validation pass per request; on this route, at
# 1,500 frames/s per edge node, they were half the gateway's CPU (py-spy). The headers are
# still documented in the OpenAPI schema below, and validated here with the same answers.
_HEADER_DOCS = [
    {
        "name": "Authorization",
        "in": "header",
        "required": True,
        "description": "`Bearer <camera token>`",
        "schema": {"type": "string"},
    },
    {
        "name": "X-Capture-Ns",
        "in": "header",
        "required": False,
        "description": "capture time, ns since the epoch (default: receive time)",
        "schema": {"type": "integer", "minimum": 0, "maximum": _MAX_INT},
    },
    {
        "name": "X-Seq",
        "in": "header",
        "required": False,
        "description": "camera frame sequence (default: the gateway's counter)",
        "schema": {"type": "integer", "minimum": 0, "maximum": _MAX_INT},
    },
]


def _int_header(request: Request, name: str, metrics: GatewayMetrics) -> int | None:
    raw = request.headers.get(name)
    if raw is None:
        return None
    value = raw.strip()
    # ASCII digits only (int() would take other scripts' digits), at most 19 of them.
    number = int(value) if value.isascii() and value.isdigit() and len(value) <= 19 else -1
    if not 0 <= number <= _MAX_INT:
        raise _reject(
            metrics,
            422,
            "invalid_request",
            f"header {name}: must be a whole number from 0 to {_MAX_INT}, not {raw[:32]!r}",
        )
    return number


@router.post(
    "/{camera_id}/frames",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=FrameAccepted,
    responses={code: {"model": Problem} for code in (400, 401, 408, 413, 415, 422, 503)},
    openapi_extra={
        "parameters": _HEADER_DOCS,
        "requestBody": {
            "required": True,
            "content": {
                **{t: {"schema": {"type": "string", "format": "binary"}} for t in _MAGIC},
                _MULTIPART: {
                    "schema": {
                        "type": "object",
                        "description": "exactly one JPEG or PNG file part; other fields ignored",
                    }
                },
            },
        },
    },
)
async def post_frame(request: Request, camera_id: str) -> Response:
    """Accept one JPEG or PNG frame (raw body or one multipart/form-data image part); run
    motion; publish it when it shows motion."""
    state = request.app.state
    edge: Edge = state.edge
    settings: GatewaySettings = state.settings
    metrics: GatewayMetrics = state.metrics
    headers = request.headers
    authorization = headers.get("authorization")
    token = None
    if authorization and authorization[:7].lower() == "bearer ":
        token = authorization[7:].strip()
    try:
        camera = edge.authenticate(camera_id, token)
    except UnknownCamera:
        verify(token or "", _NOBODY)
        raise _reject(
            metrics, 401, "unknown_camera", _NOT_ACCEPTED, {"WWW-Authenticate": "Bearer"}
        ) from None
    except Unauthorized:
        raise _reject(
            metrics, 401, "unauthorized", _NOT_ACCEPTED, {"WWW-Authenticate": "Bearer"}
        ) from None
    content_type = headers.get("content-type", "")
    media = content_type.split(";")[0].strip().lower()
    if media not in CONTENT_TYPES and media != _MULTIPART:
        raise _reject(
            metrics,
            415,
            "media_type",
            "Content-Type must be image/jpeg, image/png or multipart/form-data, "
            f"not {media or 'missing'}",
        )
    capture_ns = _int_header(request, "x-capture-ns", metrics)
    seq = _int_header(request, "x-seq", metrics)
    body = await _read_body(request, camera_id, settings, metrics)
    if media == _MULTIPART:
        try:
            body, media = image_part(body, content_type)
        except FrameError as exc:
            raise _reject(metrics, 422, "not_decodable", f"camera {camera_id}: {exc}") from None
    if not body.startswith(_MAGIC[media]):
        raise _reject(
            metrics,
            422,
            "not_decodable",
            f"camera {camera_id}: body is not a {media.split('/')[1].upper()}",
        )
    _check_pixels(body, camera_id, settings.max_frame_pixels, metrics)
    try:
        done = await edge.ingest(camera, body, media, capture_ns, seq)
    except PayloadTooLarge as exc:
        # Permanent: the broker will never take this frame, so no Retry-After.
        raise _reject(metrics, 413, "over_broker_limit", str(exc)) from None
    except FrameError as exc:
        raise _reject(metrics, 422, "not_decodable", f"camera {camera_id}: {exc}") from None
    except BrokerDown as exc:
        raise _reject(
            metrics, 503, "broker_down", str(exc), {"Retry-After": str(settings.retry_after_s)}
        ) from None
    r = done.result
    answer = {
        "motion": r.motion,
        "score": round(r.score, 4),
        "event_id": r.event_id,
        "published": done.published,
        "seq": done.seq,
    }
    # Built by hand: FastAPI would validate and re-serialize a returned model per request.
    return Response(_JSON.encode(answer), 202, media_type="application/json")
