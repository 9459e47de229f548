"""Run one detector process: model, broker, archive, metrics endpoint, signal handling."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from functions.detector.metrics import DetectorMetrics
from functions.detector.model import Model, ModelError, ModelOptions
from functions.detector.worker import Detector
from tripwire import timeline
from tripwire.alert_rules import unknown_classes
from tripwire.archive import open_archive
from tripwire.broker_endpoint import connected_broker
from tripwire.camera_config import CamerasFile, load_config
from tripwire.errors import MODEL_UNAVAILABLE_EXIT, ConfigError
from tripwire.health_server import HealthServer
from tripwire.settings import DetectorSettings

log = logging.getLogger(__name__)


def model_options(settings: DetectorSettings) -> ModelOptions:
    return ModelOptions(
        weights=settings.weights,
        # Only when configured; unset, the model runs at its own training size.
        imgsz=settings.imgsz,
        conf=settings.conf,
        iou=settings.iou,
        max_det=settings.max_det,
        device=settings.device,
        task=settings.task,
        allow_download=settings.allow_download,
    )


def for_model(settings: DetectorSettings, cameras: CamerasFile) -> DetectorSettings:
    """The settings of the model named ``settings.model`` (its weights, task, device, batch
    and size from the models section); unchanged when no model is named."""
    if settings.model is None:
        return settings
    served = cameras.model(settings.model)
    if served is None:
        known = [m.name for m in cameras.models] or "none: the config has no models section"
        raise ConfigError(f"model {settings.model!r} is not declared in the config ({known})")
    weights = served.weights
    if settings.models_dir is not None:
        weights = str(settings.models_dir / Path(weights).name)
    return settings.model_copy(
        update={
            "weights": weights,
            "task": served.task,
            # auto: the process's own setting (a GPU pod's cuda:0 stays).
            "device": settings.device if served.device == "auto" else served.device,
            "batch_size": served.batch,
            "imgsz": served.imgsz,
        }
    )


async def run_detector(settings: DetectorSettings) -> int:
    cameras = load_config(settings.config_path())
    try:
        settings = for_model(settings, cameras)
    except ConfigError as exc:
        print(f"tripwire detector: {exc}", file=sys.stderr, flush=True)
        return MODEL_UNAVAILABLE_EXIT
    # Signals count from the start: a SIGTERM while the model loads ends the process cleanly
    # (it holds no message yet) instead of killing it with 143.
    stop_asked = asyncio.Event()
    detector: Detector | None = None

    def on_signal() -> None:
        stop_asked.set()
        if detector is not None:
            detector.stop()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    metrics = DetectorMetrics()
    warm = asyncio.Event()  # set once the model is loaded and warmed up: /readyz is 200
    health = HealthServer(metrics.registry, warm.is_set, not_ready="warming up")
    await health.start(settings.metrics_host, settings.metrics_port)
    log.info("detector metrics on http://%s:%d/metrics", settings.metrics_host, health.port)
    archive = open_archive(settings.archive, settings.home)
    # The model loads in a thread while the broker and archive connect: cold start is the
    # longest of the three, not their sum.
    loading = asyncio.create_task(
        asyncio.to_thread(Model, model_options(settings), settings.home / "ultralytics")
    )
    try:
        async with connected_broker(settings, settings.model) as broker:
            await archive.ensure()
            try:
                model = await loading
            except ModelError as exc:
                # Restarting cannot fix it: the exit status tells the local scaler to stop.
                print(f"tripwire detector: {exc}", file=sys.stderr, flush=True)
                return MODEL_UNAVAILABLE_EXIT
            if not model.untrained and (
                problems := unknown_classes(
                    cameras.alerts, set(model.names.values()), settings.model
                )
            ):
                # A rule that can never fire is a config error: say so and stop, as above.
                labels = ", ".join(sorted(set(model.names.values()))[:12])
                print(f"tripwire detector: {'; '.join(problems)} ({model.name}: {labels}, ...)",
                      file=sys.stderr, flush=True)  # fmt: skip
                return MODEL_UNAVAILABLE_EXIT
            if stop_asked.is_set():
                log.info("stopped before consuming anything")
                return 0
            timeline.record(
                "model_loaded",
                seconds=round(model.load_s, 3),
                first_inference_s=round(model.first_inference_s, 3),
                untrained=model.untrained,
            )
            warm.set()
            metrics.ready.set(1)
            detector = Detector(settings, cameras, broker, archive, model, metrics)
            if stop_asked.is_set():
                detector.stop()
            runner = asyncio.create_task(detector.run())
            await _stopped(detector, runner, settings.stop_timeout_s)
            c = detector.counts
            log.info(
                "detector stopped: %d acked, %d dead-lettered, %d released",
                c.acked,
                c.dead,
                c.released,
            )
    finally:
        if not loading.done():
            loading.cancel()
        await archive.close()
        await health.stop()
    return 0


async def _stopped(detector: Detector, runner: asyncio.Task[None], bound_s: float) -> None:
    """Wait for the run to end; once stop was asked, give it ``bound_s`` to finish."""
    while not runner.done():
        done, _ = await asyncio.wait({runner}, timeout=0.2)
        if done or not detector.stopping:
            continue
        try:
            await asyncio.wait_for(asyncio.shield(runner), bound_s)
        except TimeoutError:
            log.warning(
                "graceful stop took over %.0fs; exiting, unacked frames return to the broker",
                bound_s,
            )
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        return
    runner.result()
