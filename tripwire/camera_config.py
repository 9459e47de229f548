"""The camera config file (YAML): cameras, their tokens, motion parameters, masks and zones.

```yaml
defaults:
  motion: {threshold: 25}        # merged under every camera's own motion block
cameras:
  - id: cam-1
    token_hash: "sha256:..."     # from `tripwire token new cam-1`
    motion: {min_area: 0.0005}
    masks: [[[0.0, 0.0], [1.0, 0.0], [1.0, 0.08], [0.0, 0.08]]]   # e.g. an on-screen clock
    zones: {driveway: [[0.1, 0.5], [0.6, 0.5], [0.6, 1.0], [0.1, 1.0]]}
  - id: cam-2
    token_hash: "sha256:..."
    source: {url: "rtsp://user:pass@10.0.0.7/stream1", fps: 10}   # pulled by tripwire cameras
models:                          # optional: several models by name (see tripwire/model_config.py)
  - {name: coco, weights: yolov8n_int8.tflite, task: detect, labels: [person, car]}
```

Polygon points are fractions of the frame width and height (0..1), so one config works for
every resolution a camera may send. Unknown keys are errors that name their path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tripwire.alert_rules import AlertRule
from tripwire.contract import check_camera_id
from tripwire.errors import ConfigError, ContractError
from tripwire.model_config import ModelConfig
from tripwire.tokens import PREFIX as TOKEN_PREFIX
from tripwire.validation import Loc, validation_message

Point = tuple[Annotated[float, Field(ge=0.0, le=1.0)], Annotated[float, Field(ge=0.0, le=1.0)]]
Polygon = Annotated[list[Point], Field(min_length=3, description="at least 3 points, 0..1")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MotionConfig(Strict):
    """Motion detection parameters of one camera (see functions/motion/analyser.py).

    Sizes are relative (fractions of the frame; gray levels 0-255 after the blur), so one
    block suits every resolution a camera may send. Frame counts are analysed frames.
    """

    analysis_height: int = Field(
        180,
        ge=45,
        le=1080,
        description="analyse at about this many rows; picks the JPEG reduced-decode factor",
    )
    threshold: int = Field(
        20,
        ge=1,
        le=254,
        description="difference to the background (gray levels, after blur) that is a change",
    )
    min_area: float = Field(
        0.00015,
        gt=0.0,
        lt=1.0,
        description="smallest moving blob, fraction of the frame (0.00015 = 12x12 px at 720p)",
    )
    blur: int = Field(
        5, ge=1, le=31, description="Gaussian blur kernel (odd, analysis pixels) before diffing"
    )
    alpha: float = Field(
        0.05, gt=0.0, le=1.0, description="background running-average weight per analysed frame"
    )
    frames_to_open: int = Field(
        2, ge=1, le=100, description="consecutive frames with motion at one place to open an event"
    )
    frames_to_close: int = Field(
        10, ge=1, le=1000, description="consecutive quiet frames that close an open event"
    )
    calibration_frames: int = Field(
        5, ge=1, le=300, description="frames to learn the background at start and after lights"
    )
    lighting_change: float = Field(
        0.35,
        gt=0.0,
        le=1.0,
        description="changed fraction of the frame taken as a lighting change (recalibrate)",
    )
    lighting_step: float = Field(
        0.15,
        gt=0.0,
        le=1.0,
        description="jump of the mean brightness between analysed frames taken as lights",
    )
    analysis_fps: float = Field(
        10.0,
        ge=0.0,
        le=120.0,
        description="analyse at most this many frames/s (0 = every frame); others ride along",
    )
    max_publish_fps: float = Field(
        5.0, gt=0.0, le=120.0, description="publish at most this many motion frames/s"
    )
    max_boxes: int = Field(
        16, ge=1, le=256, description="report at most this many boxes, largest first"
    )

    @field_validator("blur")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError("must be odd")
        return value


def _token_hash(value: str, how: str) -> str:
    digest = value.removeprefix(TOKEN_PREFIX)
    if not value.startswith(TOKEN_PREFIX) or len(digest) != 64:
        raise ValueError(f"must be 'sha256:' and 64 hex digits ({how})")
    int(digest, 16)
    return value


class SourceConfig(Strict):
    """Where ``tripwire cameras`` pulls a camera that cannot push (see functions/motion/pull.py).

    ``url``: ``rtsp://``, an ``http(s)://`` MJPEG stream or snapshot URL, a video file, a
    ``/dev/videoN`` device or a camera index. ``kind: auto`` asks an http(s) URL for its
    Content-Type once (multipart = stream, an image = snapshot); everything else is a stream.
    """

    url: str = Field(min_length=1, description="rtsp://, http(s) stream or snapshot, file, device")
    kind: Literal["auto", "stream", "snapshot"] = Field(
        "auto", description="stream (read every frame) or snapshot (GET one image per period)"
    )
    fps: float | None = Field(
        None,
        gt=0.0,
        le=120.0,
        description="read at most this many frames/s; unset = a stream's own rate, 2 snapshots/s",
    )
    node: str | None = Field(
        None, description="on a cluster: the edge node that pulls it (TRIPWIRE_NODE)"
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"url": data} if isinstance(data, str) else data


class CameraConfig(Strict):
    id: str = Field(description="camera id: 1-63 of a-z 0-9 - _")
    token_hash: str = Field(description="sha256:<hex> of the camera's bearer token")
    source: SourceConfig | None = Field(
        None, description="pull this camera (tripwire cameras) instead of waiting for pushes"
    )
    motion: MotionConfig = Field(default_factory=MotionConfig)
    masks: list[Polygon] = Field(default_factory=list, description="areas where motion is ignored")
    zones: dict[str, Polygon] = Field(default_factory=dict, description="named areas of interest")

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        try:
            return check_camera_id(value)
        except ContractError as exc:
            raise ValueError(str(exc)) from exc

    @field_validator("token_hash")
    @classmethod
    def _hash(cls, value: str) -> str:
        return _token_hash(value, "tripwire token new CAMERA")


class OperatorConfig(Strict):
    """A console user: the events API's bearer token, stored only as a hash."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$", description="operator name")
    token_hash: str = Field(description="sha256:<hex> (tripwire token new --operator NAME)")

    @field_validator("token_hash")
    @classmethod
    def _hash(cls, value: str) -> str:
        return _token_hash(value, "tripwire token new --operator NAME")


class Defaults(Strict):
    motion: dict[str, Any] = Field(default_factory=dict, description="motion keys for all cameras")


class CamerasFile(Strict):
    defaults: Defaults = Field(default_factory=Defaults)
    cameras: list[CameraConfig] = Field(default_factory=list)
    alerts: list[AlertRule] = Field(default_factory=list, description="alert rules")
    operators: list[OperatorConfig] = Field(
        default_factory=list, description="console users (separate from camera tokens)"
    )
    models: list[ModelConfig] = Field(
        default_factory=list,
        description="detector models by name; none = one model from the detector's settings",
    )

    @model_validator(mode="before")
    @classmethod
    def _merge_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        defaults = (data.get("defaults") or {}).get("motion") or {}
        cameras = data.get("cameras") or []
        if defaults and isinstance(cameras, list):
            data = dict(data)
            data["cameras"] = [
                {**cam, "motion": {**defaults, **(cam.get("motion") or {})}}
                if isinstance(cam, dict)
                else cam
                for cam in cameras
            ]
        return data

    @model_validator(mode="after")
    def _unique(self) -> CamerasFile:
        seen: set[str] = set()
        for cam in self.cameras:
            if cam.id in seen:
                raise ValueError(f"camera id {cam.id!r} appears twice")
            seen.add(cam.id)
        names = [o.name for o in self.operators]
        if len(set(names)) != len(names):
            raise ValueError("an operator name appears twice")
        for i, rule in enumerate(self.alerts):
            for camera in rule.cameras or seen:
                target = self.camera(camera)
                if target is None:
                    raise ValueError(f"alerts[{i}]: camera {camera!r} is not configured")
                if rule.cameras and (missing := set(rule.zones) - set(target.zones)):
                    raise ValueError(f"alerts[{i}]: camera {camera} has no zone {sorted(missing)}")
        self._check_models(seen)
        return self

    def _check_models(self, cameras: set[str]) -> None:
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError("a model name appears twice")
        for i, model in enumerate(self.models):
            for camera in model.cameras:
                if camera not in cameras:
                    raise ValueError(
                        f"models[{i}] ({model.name}): camera {camera!r} is not configured"
                    )
            served = [c for c in self.cameras if model.serves(c.id)]
            for zone in model.zones:
                having = [c.id for c in served if zone in c.zones]
                if not having or (model.cameras and len(having) != len(served)):
                    lacking = sorted({c.id for c in served} - set(having)) or "any camera"
                    raise ValueError(
                        f"models[{i}] ({model.name}): zone {zone!r} missing on {lacking}"
                    )
        by_name = {m.name: m for m in self.models}
        every_label = (
            {label for m in self.models for label in m.labels or ()}
            if self.models and all(m.labels is not None for m in self.models)
            else None
        )
        for i, rule in enumerate(self.alerts):
            if rule.model is not None and rule.model not in by_name:
                known = sorted(by_name) or "none: the file has no models section"
                raise ValueError(f"alerts[{i}]: model {rule.model!r} is not declared ({known})")
            labels = by_name[rule.model].labels if rule.model is not None else every_label
            if labels is not None and (missing := [c for c in rule.classes if c not in labels]):
                whose = f"model {rule.model}" if rule.model else "any declared model"
                raise ValueError(f"alerts[{i}] ({rule.kind}): {missing} are not labels of {whose}")

    def model(self, name: str) -> ModelConfig | None:
        return next((m for m in self.models if m.name == name), None)

    def camera(self, camera_id: str) -> CameraConfig | None:
        return next((c for c in self.cameras if c.id == camera_id), None)


def _raise(exc: ValidationError, source: str, prefix: Loc = ()) -> NoReturn:
    raise ConfigError(validation_message(exc, source, prefix)) from None


def parse_config(data: Any, source: str = "<config>") -> CamerasFile:
    """Validate a parsed YAML document; errors name the offending key path."""
    data = data if data is not None else {}
    defaults = data.get("defaults") if isinstance(data, dict) else None
    if isinstance(defaults, dict) and isinstance(defaults.get("motion"), dict):
        try:  # checked on its own so that a typo there is reported at its own path
            MotionConfig.model_validate(defaults["motion"])
        except ValidationError as exc:
            _raise(exc, source, ("defaults", "motion"))
    try:
        return CamerasFile.model_validate(data)
    except ValidationError as exc:
        _raise(exc, source)


def load_config(path: str | os.PathLike[str] | None) -> CamerasFile:
    """Load the cameras file at ``path``; ``None`` gives an empty config."""
    if path is None:
        return CamerasFile()
    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text())
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from None
    return parse_config(data, str(file))
