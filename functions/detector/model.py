"""The YOLO model behind the detector: loaded once, warmed up once, run on batches.

Any ultralytics weights work: ``.pt``, ``.onnx``, ``.tflite`` (LiteRT) or a ``.yaml``
architecture (untrained, for plumbing tests). Detect models give boxes; classify models
give a whole-frame top-1 label. CUDA is used when present, in half precision.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from tripwire.errors import TripwireError

log = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]
Task = Literal["detect", "classify"]


class ModelError(TripwireError):
    """The model cannot be loaded or run."""


@dataclass(frozen=True, slots=True)
class Box:
    label: str
    confidence: float
    xyxy: tuple[float, float, float, float]  # full-frame pixels


@dataclass(frozen=True, slots=True)
class Prediction:
    boxes: tuple[Box, ...]
    top1: tuple[str, float] | None  # classify models: whole-frame label and confidence


@dataclass(frozen=True, slots=True)
class BatchTimes:
    """Per-image milliseconds as ultralytics reports them for the batch."""

    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float


@dataclass(frozen=True)
class ModelOptions:
    weights: str
    # None: the size the weights were trained at (a classifier trained at 224 and run at 640
    # calls most frames wrong), else 640.
    imgsz: int | None = None
    conf: float = 0.25
    iou: float = 0.7
    max_det: int = 100
    device: str = "auto"
    task: Task | None = None  # None: ultralytics infers it (a .tflite export needs "detect")
    allow_download: bool = False  # let ultralytics fetch missing named weights


class Predictor(Protocol):
    """What the worker needs of a model: :class:`Model`, or a test's stand-in that needs no
    torch."""

    name: str
    version: str
    task: Task
    untrained: bool
    load_s: float
    first_inference_s: float

    def predict(self, images: Sequence[Image]) -> tuple[list[Prediction], BatchTimes]:
        """Blocking: boxes (or the top-1 label) per image, and the batch's stage times."""
        ...


def _offline_environment(config_dir: Path) -> None:
    """Keep ultralytics from reaching the network or writing to $HOME."""
    config_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))
    os.environ.setdefault("MPLCONFIGDIR", str(config_dir / "matplotlib"))


def _fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


def _trained_imgsz(yolo: Any) -> int:
    """The training size a .pt checkpoint records (ultralytics keeps it in overrides); 640."""
    size = (getattr(yolo, "overrides", None) or {}).get("imgsz")
    if isinstance(size, int):
        return size
    if isinstance(size, list | tuple) and size:
        return int(max(size))
    return 640


def _xyxy(values: Sequence[float]) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (round(float(v), 1) for v in values)
    return (x1, y1, x2, y2)


def check_weights(options: ModelOptions) -> None:
    """Raise ModelError when the weights file is missing and may not be downloaded (cheap:
    no import, so a supervisor can check before it starts any worker)."""
    weights = options.weights
    path = Path(weights)
    if path.suffix != ".yaml" and not path.exists() and not options.allow_download:
        raise ModelError(
            f"weights {weights!r} not found; pass --weights PATH (or yolo11n.yaml for an "
            "untrained model), or allow_download where the internet is reachable"
        )


class Model:
    """A loaded, warmed-up model. ``predict`` is blocking: call it from a worker thread."""

    def __init__(self, options: ModelOptions, config_dir: Path) -> None:
        _offline_environment(config_dir)
        started = time.perf_counter()
        try:
            import torch

            from functions.detector import torchvision_cpu

            if not torch.cuda.is_available():
                torchvision_cpu.install()
            import ultralytics
            from ultralytics import YOLO
            from ultralytics.cfg import DEFAULT_CFG_DICT
        except ImportError as exc:
            raise ModelError(
                f"the detector needs ultralytics ({exc.name} is missing): "
                "pip install -e '.[detector]' (CPU-only machines: scripts/install-detector-cpu)"
            ) from None
        weights = options.weights
        path = Path(weights)
        check_weights(options)
        self.untrained = path.suffix == ".yaml"
        self.device = options.device
        if self.device == "auto":
            self.device = "cuda:0" if torch.cuda.is_available() else "cpu"
        self.half = self.device.startswith("cuda")
        # ultralytics 8.4 renamed half to quantize=16 and warns on every call that uses half.
        half_arg = {"quantize": 16} if "quantize" in DEFAULT_CFG_DICT else {"half": True}
        self.precision: dict[str, Any] = half_arg if self.half else {}
        self.options = options
        try:
            self._yolo: Any = YOLO(weights, task=options.task) if options.task else YOLO(weights)
        except Exception as exc:  # ultralytics raises many kinds; report the file and cause
            raise ModelError(f"weights {weights!r} did not load: {exc}") from exc
        self.task: Task = "classify" if self._yolo.task == "classify" else "detect"
        self.names: dict[int, str] = dict(self._yolo.names or {})
        self.imgsz = options.imgsz or _trained_imgsz(self._yolo)
        self.name = path.stem
        self.version = f"ultralytics-{ultralytics.__version__}"
        if path.exists():
            self.version += f"+{_fingerprint(path)}"
        self.load_s = time.perf_counter() - started
        started = time.perf_counter()
        self.predict([np.zeros((self.imgsz, self.imgsz, 3), np.uint8)])
        self.first_inference_s = time.perf_counter() - started
        log.info(
            "model %s (%s, %s) loaded in %.2fs, first inference %.2fs%s",
            self.name,
            self.task,
            self.device,
            self.load_s,
            self.first_inference_s,
            " [untrained model]" if self.untrained else "",
        )

    def predict(self, images: Sequence[Image]) -> tuple[list[Prediction], BatchTimes]:
        """One ultralytics call for the whole batch; boxes in each image's own pixels."""
        o = self.options
        results = self._yolo.predict(
            list(images),
            imgsz=self.imgsz,
            conf=o.conf,
            iou=o.iou,
            max_det=o.max_det,
            device=self.device,
            verbose=False,
            **self.precision,  # nothing on CPU: ultralytics warns about half there
        )
        out = [self._convert(r) for r in results]
        speed = results[0].speed if results else {}
        times = BatchTimes(
            float(speed.get("preprocess") or 0.0),
            float(speed.get("inference") or 0.0),
            float(speed.get("postprocess") or 0.0),
        )
        return out, times

    def _convert(self, result: Any) -> Prediction:
        names = result.names
        if self.task == "classify":
            probs = result.probs
            top = int(probs.top1)
            return Prediction((), (str(names[top]), float(probs.top1conf)))
        boxes = result.boxes
        xyxy = boxes.xyxy.cpu().numpy().tolist()
        cls = boxes.cls.cpu().numpy().astype(int).tolist()
        conf = boxes.conf.cpu().numpy().tolist()
        return Prediction(
            tuple(
                Box(str(names[c]), round(float(p), 4), _xyxy(b))
                for b, c, p in zip(xyxy, cls, conf, strict=True)
            ),
            None,
        )
