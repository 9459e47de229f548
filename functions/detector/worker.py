"""The detector loop: fetch motion frames, batch, infer, archive, publish, then ack.

At-least-once, in this order for every frame: archive writes (frame + detections JSON, under
deterministic keys) -> result published (confirmed) -> ack. Alert rules are not decided here
but by the events function, once per camera, from these results. A transient outage
(archive or broker) holds the frame and retries in process, extending its ack deadline, so
an outage never burns the delivery count that poison detection relies on; a poison message
(bad headers, undecodable, delivered too often) or one whose result the broker refuses for
good (too large) is dead-lettered with its reason at once.
On stop: no new fetches, the batch in hand is finished and acked, the rest is released.

A named model (``--model``, the config's models section) reads its own consumer or queue:
its results and detections keys carry its name, a frame another model archived already is
not written again, and with ``zones`` a frame whose motion touches none of them is acked
without inference.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, cast

import cv2
import numpy as np

from functions.detector.metrics import DetectorMetrics
from functions.detector.model import Image, Prediction, Predictor
from functions.detector.results import encode, result_document
from tripwire import timeline
from tripwire.archive import Archive, detections_key, frame_key
from tripwire.brokers import Broker, Message, holding
from tripwire.camera_config import CameraConfig, CamerasFile
from tripwire.contract import FrameMeta, Header, detections_subject
from tripwire.errors import (
    ArchiveError,
    ArchiveUnavailable,
    BrokerError,
    BrokerRejected,
    ContractError,
)
from tripwire.retry import retry
from tripwire.settings import DetectorSettings

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_RETRY_DELAY_S = 10.0


@dataclass
class Work:
    message: Message
    meta: FrameMeta
    data: bytes
    image: Image | None = None


@dataclass
class StageTimes:
    """Wall milliseconds of one batch, by stage (the benchmark aggregates these)."""

    frames: int = 0
    decode_ms: float = 0.0
    preprocess_ms: float = 0.0
    inference_ms: float = 0.0
    postprocess_ms: float = 0.0
    infer_wall_ms: float = 0.0
    archive_ms: float = 0.0
    publish_ms: float = 0.0
    ack_ms: float = 0.0


@dataclass
class Counts:
    batches: int = 0
    acked: int = 0
    dead: int = 0
    released: int = 0
    retries: int = 0
    skipped: int = 0  # outside the model's zones: acked without inference


class Poison(Exception):
    """A message that can never be processed; the text is the dead-letter reason."""


@dataclass
class Detector:
    settings: DetectorSettings
    cameras: CamerasFile
    broker: Broker
    archive: Archive
    model: Predictor
    metrics: DetectorMetrics = field(default_factory=DetectorMetrics)
    counts: Counts = field(default_factory=Counts)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _kept: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        served = self.cameras.model(self.settings.model) if self.settings.model else None
        self.zones = served.zones if served else []
        self.metrics.model_load_seconds.set(self.model.load_s)
        self.metrics.first_inference_seconds.set(self.model.first_inference_s)

    def stop(self) -> None:
        """Ask the loop to finish its batch and return (safe from a signal handler)."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> None:
        """Consume until :meth:`stop`."""
        while not self.stopping:
            messages = await self.collect()
            if messages:
                await self.process_batch(messages)

    async def collect(self) -> list[Message]:
        """Up to batch_size messages: wait for the first, then at most batch_wait_ms more."""
        s = self.settings
        batch: list[Message] = []
        try:
            batch = await self.broker.fetch(1, s.fetch_wait_s)
            if not batch or s.batch_size == 1:
                return batch
            deadline = time.monotonic() + s.batch_wait_ms / 1000
            while len(batch) < s.batch_size and not self.stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                more = await self.broker.fetch(s.batch_size - len(batch), remaining)
                if not more:
                    break
                batch.extend(more)
        except BrokerError as exc:
            log.warning("fetch failed: %s", exc)
            if not batch:
                await asyncio.sleep(min(s.fetch_wait_s, 1.0))
                return []
            # What was fetched before the failure is ours to finish (or release below):
            # dropped here it would sit unacked until the broker's ack deadline.
        if self.stopping:  # fetched but not started: give it back
            await self._release(batch)
            return []
        return batch

    async def process_batch(self, messages: Sequence[Message]) -> StageTimes:
        times = StageTimes()
        started = time.perf_counter()
        work = [w for w in await asyncio.gather(*(self._prepare(m) for m in messages)) if w]
        if not work:
            return times
        images = await asyncio.to_thread(_decode_all, work)
        times.decode_ms = (time.perf_counter() - started) * 1000
        good = []
        for item, decoded in zip(work, images, strict=True):
            if isinstance(decoded, str):
                await self._dead(item.message, decoded)
            else:
                item.image = decoded
                good.append(item)
        if not good:
            return times
        t0 = time.perf_counter()
        preds, batch_times = await asyncio.to_thread(
            self.model.predict, [w.image for w in good if w.image is not None]
        )
        times.infer_wall_ms = (time.perf_counter() - t0) * 1000
        times.frames = len(good)
        times.preprocess_ms = batch_times.preprocess_ms * len(good)
        times.inference_ms = batch_times.inference_ms * len(good)
        times.postprocess_ms = batch_times.postprocess_ms * len(good)
        if self.counts.batches == 0:
            timeline.record("first_inference", frames=len(good), ms=round(times.infer_wall_ms, 1))
        self.counts.batches += 1
        self.metrics.batches.inc()
        self.metrics.batch_size.observe(len(good))
        self.metrics.inference_seconds.observe(times.infer_wall_ms / 1000)
        per_frame_ms = times.infer_wall_ms / len(good)
        await asyncio.gather(
            *(self._finish(good[i], preds[i], per_frame_ms, times) for i in range(len(good)))
        )
        return times

    async def _prepare(self, message: Message) -> Work | None:
        try:
            if message.deliveries > self.settings.max_deliveries:
                raise Poison(
                    f"delivered {message.deliveries} times "
                    f"(max_deliveries {self.settings.max_deliveries})"
                )
            try:
                meta = FrameMeta.from_headers(message.headers)
            except ContractError as exc:
                raise Poison(f"bad headers: {exc}") from None
            if not message.body:
                raise Poison("empty body")
            if self.zones and not self._in_zones(meta):
                await message.ack()
                self.counts.skipped += 1
                return None
            return Work(message, meta, message.body)
        except Poison as exc:
            await self._dead(message, str(exc))
        return None

    def _in_zones(self, meta: FrameMeta) -> bool:
        camera = self.cameras.camera(meta.camera)
        return camera is None or touches_zones(meta, camera, self.zones)

    def _keep_frame(self, meta: FrameMeta, pred: Prediction) -> bool:
        keep = self.settings.keep
        if keep == "motion":
            return True
        if keep == "detections":
            return bool(pred.boxes) or pred.top1 is not None
        return meta.seq % self.settings.keep_every_n == 0

    async def _finish(
        self,
        work: Work,
        pred: Prediction,
        inference_ms: float,
        times: StageTimes,
    ) -> None:
        meta, message = work.meta, work.message
        for label in [b.label for b in pred.boxes] + ([pred.top1[0]] if pred.top1 else []):
            self.metrics.detections.labels(label).inc()
        named = self.settings.model
        det_key = detections_key(meta.camera, meta.capture_ns, meta.seq, named)
        img_key = (
            frame_key(meta.camera, meta.capture_ns, meta.seq, meta.content_type)
            if self._keep_frame(meta, pred)
            else None
        )
        doc = result_document(meta, pred, self.model, inference_ms, img_key, det_key, named)
        # stored_ns: when the detector finished the frame (the events record's latency).
        doc["stored_ns"] = time.time_ns()
        user_meta = {
            "camera": meta.camera,
            "seq": str(meta.seq),
            "capture-ns": str(meta.capture_ns),
        }
        body = encode(doc)

        async def write() -> None:  # fresh coroutines for every attempt
            puts = [self.archive.put(det_key, body, "application/json", user_meta)]
            # With several models the frame is one object: the first model to finish it
            # writes it, the others find it there (same key, same bytes).
            if img_key and not (named and await self.archive.exists(img_key)):
                puts.append(self.archive.put(img_key, work.data, meta.content_type, user_meta))
            await asyncio.gather(*puts)

        try:
            t0 = time.perf_counter()
            await self._retrying(message, write)
            times.archive_ms += (time.perf_counter() - t0) * 1000
            t0 = time.perf_counter()
            headers = {
                Header.ID: f"{meta.message_id}-det" + (f"-{named}" if named else ""),
                Header.CAMERA: meta.camera,
                Header.CONTENT_TYPE: "application/json",
            }
            await self._retrying(
                message, lambda: self.broker.publish(detections_subject(meta.camera), body, headers)
            )
            times.publish_ms += (time.perf_counter() - t0) * 1000
            t0 = time.perf_counter()
            await message.ack()
            times.ack_ms += (time.perf_counter() - t0) * 1000
        except _Released:
            return
        except ArchiveError as exc:  # permanent: retrying cannot fix it
            await self._dead(message, f"archive: {exc}")
            return
        except BrokerRejected as exc:  # a result the broker will never take (too large)
            await self._dead(message, f"publish: {exc}")
            return
        except BrokerError as exc:  # the ack itself failed: the broker will redeliver
            log.warning(
                "camera %s frame %d: ack failed (%s); it will be redelivered",
                meta.camera,
                meta.seq,
                exc,
            )
            return
        if self.counts.acked == 0:
            timeline.record(
                "result_stored", camera=meta.camera, seq=meta.seq, capture_ns=meta.capture_ns
            )
        self.counts.acked += 1
        self.metrics.acks.inc()
        self.metrics.end_to_end_seconds.observe(max(0.0, (time.time_ns() - meta.capture_ns) / 1e9))

    async def _retrying(self, message: Message, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op`` until it succeeds; hold the message through transient outages.

        Any broker error but a rejection is held too: a lost binding or a channel being
        reopened heals in seconds, and holding the frame is cheaper than its redelivery.
        """

        def on_retry(exc: BaseException, _attempt: int, wait_s: float) -> None:
            if isinstance(exc, ArchiveUnavailable):
                self.metrics.archive_errors.inc()
            self.counts.retries += 1
            if not self.stopping:
                log.warning(
                    "transient failure, holding the frame and retrying in %.1fs: %s", wait_s, exc
                )

        async def hold(wait_s: float) -> None:
            if self.stopping:
                await self._release([message], reason="stopping during an outage")
                raise _Released from None
            await holding.hold([message], self._stopping, wait_s)

        return await retry(
            op,
            first_s=self.settings.retry_backoff_s,
            max_s=MAX_RETRY_DELAY_S,
            on_retry=on_retry,
            sleep=hold,
            transient=(ArchiveUnavailable, BrokerError),
            permanent=BrokerRejected,  # the same message would be refused for ever
        )

    async def _dead(self, message: Message, reason: str) -> None:
        if await holding.dead_letter(message, reason):
            self.counts.dead += 1
            self.metrics.dead_letters.labels(reason.split(":")[0].split(" ")[0]).inc()

    async def _release(self, messages: Sequence[Message], reason: str = "stopping") -> None:
        for message in messages:
            with contextlib.suppress(BrokerError):
                await message.nak()
            self.counts.released += 1
            self.metrics.naks.labels(reason).inc()


def touches_zones(meta: FrameMeta, camera: CameraConfig, zones: Sequence[str]) -> bool:
    """Whether a motion box of the frame overlaps the bounding box of one of ``zones`` of its
    camera (a frame without motion boxes counts as touching: the whole frame moved)."""
    if not meta.boxes:
        return True
    w, h = max(meta.width, 1), max(meta.height, 1)
    for name in zones:
        polygon = camera.zones.get(name)
        if polygon is None:
            continue
        zx1, zx2 = min(p[0] for p in polygon), max(p[0] for p in polygon)
        zy1, zy2 = min(p[1] for p in polygon), max(p[1] for p in polygon)
        for x1, y1, x2, y2 in meta.boxes:
            if x1 / w <= zx2 and x2 / w >= zx1 and y1 / h <= zy2 and y2 / h >= zy1:
                return True
    return False


class _Released(Exception):
    """The message was handed back to the broker; stop working on it."""


def _decode_all(work: Sequence[Work]) -> list[Image | str]:
    """Full colour decode for the model (the detector needs colour; the edge never does)."""
    out: list[Image | str] = []
    for item in work:
        decoded = cv2.imdecode(np.frombuffer(item.data, np.uint8), cv2.IMREAD_COLOR)
        image = cast("Image | None", decoded)
        if image is None:
            out.append(f"not decodable: {item.meta.content_type} body of {len(item.data)} bytes")
        else:
            out.append(image)
    return out
