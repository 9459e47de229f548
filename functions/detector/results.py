"""The document the detector publishes and archives for every frame (parsed by the events
function with :class:`tripwire.event_messages.FrameResult`)."""

from __future__ import annotations

import json
from typing import Any

from functions.detector.model import Prediction, Predictor
from tripwire.contract import FrameMeta
from tripwire.event_messages import RESULT_SCHEMA


def model_info(model: Predictor, name: str | None = None) -> dict[str, Any]:
    """``name``: the model's name in the config's models section, which the events record and
    the alert rules key on; None (one default model) = the weights' own name, as before."""
    info = {
        "name": name or model.name,
        "version": model.version,
        "task": model.task,
        "untrained": model.untrained,
    }
    if name:  # which weights served the named model (it may be swapped)
        info["weights"] = model.name
    return info


def result_document(
    meta: FrameMeta,
    pred: Prediction,
    model: Predictor,
    inference_ms: float,
    frame_key: str | None,
    detections_key: str,
    model_name: str | None = None,
) -> dict[str, Any]:
    return {
        "schema": RESULT_SCHEMA,
        "camera": meta.camera,
        "seq": meta.seq,
        "capture_ns": meta.capture_ns,
        "receive_ns": meta.receive_ns,
        "event_id": meta.event_id,
        "width": meta.width,
        "height": meta.height,
        "motion_boxes": [list(b) for b in meta.boxes],
        "model": model_info(model, model_name),
        "boxes": [
            {"class": b.label, "confidence": b.confidence, "xyxy": list(b.xyxy)} for b in pred.boxes
        ],
        "label": (
            {"class": pred.top1[0], "confidence": round(pred.top1[1], 4)} if pred.top1 else None
        ),
        "inference_ms": round(inference_ms, 2),
        "archive": {"frame": frame_key, "detections": detections_key},
    }


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()
